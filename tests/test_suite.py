"""``cifar-bench suite``: runs from a TOML file, resumable, failures recorded, one table at the end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from cifar_bench.execution import torchrun
from cifar_bench.execution.suite import load

SMOKE = """
name = "smoke"
[defaults]
dataset = "synthetic"
limit_train = 64
limit_test = 20
epochs = 1
threads = 1
"""

THREE_RUNS = (
    SMOKE
    + """
[[runs]]
recipes = "baseline"
seeds = [0, 1]

[[runs]]
recipes = "baseline"
batch_size = 16
set = { lr = 0.01 }
"""
)


def write(tmp_path, text: str, name: str = "suite.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def records(folder) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def table_rows(out: str) -> list[str]:
    """The final table's data rows (after its dashed rule)."""
    lines = out.rstrip().splitlines()
    rule = max(i for i, line in enumerate(lines) if line.startswith("---"))
    return [line for line in lines[rule + 1 :] if not line.startswith("(")]


def test_a_suite_runs_everything_then_a_second_start_runs_nothing(run_cli, tmp_path):
    suite = write(tmp_path, THREE_RUNS)
    first = run_cli("suite", suite, "--results-dir", tmp_path / "r", "--quiet")
    assert first.code == 0, first
    found = records(tmp_path / "r")
    assert len(found) == 3 and {r["status"] for r in found} == {"ok"}
    assert len({r["suite_key"] for r in found}) == 3
    assert sorted((r["seed"], r["hyperparameters"]["batch_size"]) for r in found) == [(0, 4), (0, 16), (1, 4)]
    assert "[3/3] baseline cpu tensor fp32 seed 0 batch_size=16 lr=0.01: running" in first.out
    # The table splits runs by what differs between them, and takes the median over seeds.
    rows = table_rows(first.out)
    assert len(rows) == 2 and any("batch_size=16 lr=0.01" in r for r in rows)

    again = run_cli("suite", suite, "--results-dir", tmp_path / "r", "--quiet")
    assert again.code == 0, again
    assert "3 runs, 3 done before, 0 to run" in again.out and ": running" not in again.out
    assert len(records(tmp_path / "r")) == 3
    assert table_rows(again.out) == rows  # the whole suite's table, read back from its records


def test_dry_run_lists_the_runs_and_what_is_done_and_runs_nothing(run_cli, tmp_path):
    suite = write(tmp_path, THREE_RUNS)
    result = run_cli("suite", suite, "--results-dir", tmp_path / "r", "--dry-run")
    assert result.code == 0, result
    assert not (tmp_path / "r").exists()
    assert "3 runs, 0 done before, 3 to run" in result.out
    assert result.out.count("to run") == 4  # the header, then each run

    # A record without the suite's key does not count as one of its runs.
    run_cli("run", "baseline", "--dataset", "synthetic", "--limit-train", "64", "--limit-test", "20", "--epochs", "1",
            "--results-dir", tmp_path / "other", "--quiet")  # fmt: skip
    assert "done" not in run_cli("suite", suite, "--results-dir", tmp_path / "other", "--dry-run").out.split("\n", 1)[1]


def test_a_failed_run_is_recorded_and_the_suite_goes_on_then_retries_it(run_cli, tmp_path):
    plugin = write(
        tmp_path,
        "import torch\nfrom cifar_bench import hookimpl\n\n"
        "class Broken(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.layer = torch.nn.Linear(1, 1)\n\n"
        "    def forward(self, x):\n"
        "        raise RuntimeError('this model cannot')\n\n"
        "@hookimpl\n"
        "def register_models(register):\n"
        "    register('broken', lambda hp: Broken())\n",
        "broken_model.py",
    )
    suite = write(
        tmp_path,
        SMOKE
        + """
[[runs]]
recipes = "baseline"
components = { model = "broken" }

[[runs]]
recipes = "baseline"
dataset = "cifar10"
data_dir = "no/such/folder"

[[runs]]
recipes = "baseline"
""",
    )
    result = run_cli("suite", suite, "-p", plugin, "--results-dir", tmp_path / "r", "--quiet")
    assert result.code == 1, result
    by_status = {}
    for record in records(tmp_path / "r"):
        by_status.setdefault(record["status"], []).append(record)
    assert len(by_status["ok"]) == 1 and len(by_status["failed"]) == 2
    model_error, data_error = sorted((r["error"] for r in by_status["failed"]), key=lambda e: "folder" in e)
    assert model_error == "RuntimeError: this model cannot"
    assert "no/such/folder" in data_error and "\n" not in data_error
    assert all(r["suite_key"] for r in by_status["failed"])
    assert sum("failed: " in row for row in table_rows(result.out)) == 2

    again = run_cli("suite", suite, "-p", plugin, "--results-dir", tmp_path / "r", "--quiet")
    assert "3 runs, 1 done before, 2 to run" in again.out
    assert len(records(tmp_path / "r")) == 5  # the failed two were tried again; the ok one was not


def test_a_killed_suite_resumes_with_only_the_unfinished_runs(run_cli, tmp_path):
    # The plugin kills the whole process (SIGKILL: no handler, no clean-up) as the second run starts.
    killer = write(
        tmp_path,
        "import os, signal\nfrom cifar_bench import hookimpl\n\nstarted = []\n\n"
        "@hookimpl\n"
        "def run_start(run):\n"
        "    started.append(run)\n"
        "    if len(started) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n",
        "killer.py",
    )
    suite = write(tmp_path, THREE_RUNS)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "cifar_bench", "suite", str(suite), "-p", str(killer), "--quiet",
               "--results-dir", str(tmp_path / "r")]  # fmt: skip
    killed = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (first,) = records(tmp_path / "r")

    resumed = run_cli("suite", suite, "--results-dir", tmp_path / "r", "--quiet")
    assert resumed.code == 0, resumed
    assert "3 runs, 1 done before, 2 to run" in resumed.out
    assert "[1/3] baseline cpu tensor fp32 seed 0: done before, skipped" in resumed.out
    found = records(tmp_path / "r")
    assert len(found) == 3 and {r["status"] for r in found} == {"ok"}
    assert len({r["suite_key"] for r in found}) == 3 and first["suite_key"] in {r["suite_key"] for r in found}
    rows = table_rows(resumed.out)  # one row per group: the first's two seeds, then the second's one
    assert len(rows) == 2 and re.search(r"fp32\s+2\s+ok", rows[0] + rows[1])
    assert any(re.search(r"batch_size=16 lr=0.01\s+1\s+ok", r) for r in rows)


def test_a_data_parallel_run_that_dies_without_a_record_gets_a_failed_one(run_cli, tmp_path, monkeypatch):
    calls = []

    def launch(settings, nproc):
        calls.append((settings, nproc))
        return 1, "rank 1 of 2 failed: RuntimeError: out of luck"

    monkeypatch.setattr(torchrun, "launch", launch)
    suite = write(tmp_path, SMOKE + '[[runs]]\nrecipes = "baseline"\nnproc = 2\n\n[[runs]]\nrecipes = "baseline"\n')
    result = run_cli("suite", suite, "--results-dir", tmp_path / "r", "--quiet")
    assert result.code == 1, result
    ((settings, nproc),) = calls
    (planned,) = settings["plan"]["runs"]  # the ranks get the run itself, serialized: no command line
    assert nproc == 2 and planned["config"]["recipe"] == "baseline" and planned["config"]["suite_key"]
    assert planned["config"]["processes"] == 2
    failed = [r for r in records(tmp_path / "r") if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"] == "rank 1 of 2 failed: RuntimeError: out of luck"
    assert failed[0]["distributed"]["world_size"] == 2 and failed[0]["distributed"]["backend"] == "gloo"
    assert "rank 1 of 2 failed" in result.err
    assert len(records(tmp_path / "r")) == 2  # and the suite went on to the next run


def test_keys_are_stable_and_name_what_a_run_computes(tmp_path):
    one = load(write(tmp_path, THREE_RUNS))
    two = load(write(tmp_path, THREE_RUNS.replace('name = "smoke"', 'name = "renamed"'), "other.toml"))
    assert [r.key for r in one.runs] == [r.key for r in two.runs]
    assert len({r.key for r in one.runs}) == 3
    doubled = load(write(tmp_path, THREE_RUNS + '\n[[runs]]\nrecipes = "baseline"\nseeds = 1\n', "twice.toml"))
    assert len(doubled.runs) == 3 and doubled.duplicates == 1


def test_a_suite_entry_can_ask_for_every_variant_the_command_line_can(run_cli, tmp_path):
    """Every field of a variant, CUDA graphs and deterministic algorithms included; the old keys keep their keys."""
    variants = "variants = [{}, { cuda_graph = true }, { deterministic = true, loader = 'dataloader' }]"
    suite = load(write(tmp_path, SMOKE + f'[[runs]]\nrecipes = "baseline"\n{variants}\n'))
    configs = [run.config().variant for run in suite.runs]
    assert [v.cuda_graph for v in configs] == [False, True, False]
    assert configs[2].deterministic and configs[2].loader == "dataloader"
    assert suite.runs[0].key == load(write(tmp_path, THREE_RUNS, "old.toml")).runs[0].key  # {} keys as before
    graphs = write(tmp_path, SMOKE + '[[runs]]\nrecipes = "baseline"\nvariants = { cuda_graph = true }\n', "g.toml")
    result = run_cli("suite", graphs, "--results-dir", tmp_path / "r")
    assert result.code == 0, result
    (record,) = records(tmp_path / "r")
    assert record["status"] == "skipped" and record["cuda_graph"] is True  # on this CPU: skipped, with the reason
    assert "CUDA graphs need a CUDA device" in record["error"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[runs]\nrecipes = 'baseline'", "not valid TOML"),
        ("[[runs]]\nrecipes = 'baseline'\nseed = 1", "unknown key 'seed': did you mean 'seeds'"),
        ("[[runs]]\nrecipes = 'baselin'", "unknown recipe 'baselin': did you mean 'baseline'?"),
        ("[[runs]]\nrecipes = 'baseline'\nnproc = 0", "nproc must be a whole number of at least 1"),
        ("[[runs]]\nrecipes = 'baseline'\nnproc = 2\nbatch_size = 7", "must divide evenly among 2"),
        ("[[runs]]\nrecipes = 'baseline'\nvariants = [{ precision = 'fp8' }]", "precision must be one of"),
        ("[[runs]]\nrecipes = 'baseline'\nvariants = [{ cuda_graphs = true }]", "did you mean 'cuda_graph'"),
        ("[[runs]]\nrecipes = 'baseline'\nvariants = [{ cuda_graph = 1 }]", "cuda_graph must be true or false"),
        ("[defaults]\nepochs = 1", "needs at least one [[runs]] table"),
        ("[[runs]]\nepochs = 1", "needs recipes"),
        ("[[runs]]\nrecipes = 'baseline'\ncomponents = { modle = 'net' }", "did you mean 'model'?"),
        ("[[runs]]\nrecipes = 'baseline'\nset = { lr = 'fast' }", "lr must be a positive number"),
        ("[[runs]]\nrecipes = 'baseline'\ndevices = 'tpu'", "unknown device 'tpu'"),
    ],
)
def test_bad_suite_files_are_one_line_errors(run_cli, tmp_path, text, message):
    result = run_cli("suite", write(tmp_path, text), "--results-dir", tmp_path / "r")
    assert result.code == 2, result
    assert len(result.err.strip().splitlines()) == 1 and message in result.err, result.err
    assert not (tmp_path / "r").exists()


def test_a_missing_suite_file_is_a_one_line_error(run_cli, tmp_path):
    result = run_cli("suite", tmp_path / "nope.toml")
    assert result.code == 2 and "no such suite file" in result.err


def test_the_example_suite_is_valid(run_cli):
    example = os.path.join(os.path.dirname(__file__), "..", "examples", "suite.toml")
    result = run_cli("suite", example, "--dry-run", "--results-dir", "/nonexistent/results")
    assert result.code == 0, result
