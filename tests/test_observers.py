"""Observers (lifecycle hooks) cannot lose a result, and see each record exactly as it is written."""

from __future__ import annotations

import json

import pytest

TINY = ("--dataset", "synthetic", "--limit-train", "40", "--limit-test", "20", "--epochs", "1",
        "--batch-size", "20", "--quiet")  # fmt: skip

# Two observer plugins: one that fails in the hook named by FAIL_IN, one that keeps every record it is shown.
FAILING = """
from cifar_bench import hookimpl

FAIL_IN = {hook!r}


@hookimpl
def {hook}({args}):
    {{}}["not_there"]
"""

KEEPER = """
import json
from cifar_bench import hookimpl

SEEN = {path!r}


@hookimpl
def run_end(run, record):
    with open(SEEN, "a") as f:
        f.write(json.dumps(record.to_dict()) + "\\n")
"""

ARGS = {"run_start": "run", "train_progress": "run, progress", "epoch_end": "run, epoch", "run_end": "run, record"}


def plugins(tmp_path, failing_hook: str | None = None) -> list[str]:
    keeper = tmp_path / "keeper.py"
    keeper.write_text(KEEPER.format(path=str(tmp_path / "seen.jsonl")))
    flags = ["-p", str(keeper)]
    if failing_hook:
        failing = tmp_path / "flaky.py"
        failing.write_text(FAILING.format(hook=failing_hook, args=ARGS[failing_hook]))
        flags += ["-p", str(failing)]
    return flags


def seen(tmp_path) -> list[dict]:
    path = tmp_path / "seen.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def written(results) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]


@pytest.mark.parametrize("hook", list(ARGS))
def test_a_failing_observer_leaves_a_record_naming_its_plugin_and_hook(run_cli, tmp_path, hook):
    results = tmp_path / "results"
    result = run_cli("run", "baseline", *plugins(tmp_path, hook), *TINY, "--results-dir", results)
    assert result.code == 1
    (record,) = written(results)
    assert f"plugin 'flaky' failed in {hook}" in result.err and "Traceback" not in result.err
    (shown,) = seen(tmp_path)
    assert shown == record  # the other observer is shown exactly the record that is written
    if hook == "run_end":  # the run had ended: its record stands as every observer was shown it
        assert record["status"] == "ok"
    else:  # the run stopped: its record says which plugin stopped it, in which hook
        assert record["status"] == "failed"
        assert f"plugin 'flaky' failed in {hook}: KeyError: 'not_there'" in record["error"]


def test_run_end_sees_the_record_as_written_with_its_reference_and_ratios(run_cli, tmp_path):
    results = tmp_path / "results"
    result = run_cli("run", "baseline", "--reference", "baseline", *plugins(tmp_path), *TINY, "--results-dir", results)
    assert result.code == 0, result
    files = {r["run_id"]: r for r in written(results)}
    shown = {r["run_id"]: r for r in seen(tmp_path)}
    assert shown == files  # both runs, each exactly as stored
    candidate = next(r for r in files.values() if r["role"] == "candidate")
    assert candidate["reference"]["run_id"] in files and candidate["timings_ratio"]["train_s"] > 0


def test_run_end_is_told_of_skipped_runs_too(run_cli, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    results = tmp_path / "results"
    run_cli("run", "baseline", "--device", "cpu,cuda", *plugins(tmp_path), *TINY, "--results-dir", results)
    statuses = sorted(r["status"] for r in seen(tmp_path))
    assert statuses == ["ok", "skipped"] and sorted(r["status"] for r in written(results)) == statuses


def test_run_end_sees_the_suite_key(run_cli, tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(
        'results_dir = "results"\n[defaults]\ndataset = "synthetic"\nlimit_train = 40\nlimit_test = 20\n'
        'epochs = 1\nbatch_size = 20\n[[runs]]\nrecipes = "baseline"\n'
    )
    result = run_cli("suite", str(suite), "--quiet", *plugins(tmp_path))
    assert result.code == 0, result
    (shown,) = seen(tmp_path)
    assert shown["suite_key"] and shown == written(tmp_path / "results")[0]
