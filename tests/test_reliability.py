"""Reliability: clean errors for bad input, no half-written or colliding records, readable old records."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cifar_bench.commands import cli
from cifar_bench.commands.run import cmd_run
from cifar_bench.errors import DataError, UsageError
from cifar_bench.results.reader import flatten
from cifar_bench.results.schema import SCHEMA_VERSION
from cifar_bench.results.store import RecordError, read_record

DATA = Path(__file__).parent / "data"


# -- data -------------------------------------------------------------------------


def test_an_empty_data_directory_says_what_it_needs(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("run", "baseline", "--data-dir", tmp_path / "empty", "--results-dir", tmp_path / "r")
    assert result.code == 2 and "no 'train' folder" in result.err and "train/<class>" in result.err


def test_an_empty_class_folder_is_named(image_folder):
    from cifar_bench.training.data import read_image_folder

    for image in (image_folder / "test" / "dog").iterdir():
        image.unlink()
    with pytest.raises(DataError, match="dog"):
        read_image_folder(image_folder)


# -- records ----------------------------------------------------------------------


def test_two_processes_writing_to_one_folder_at_once_never_collide(tmp_path):
    args = [sys.executable, "-m", "cifar_bench", "run", "baseline", "--dataset", "synthetic", "--limit-train", "40",
            "--limit-test", "20", "--epochs", "1", "--quiet", "--results-dir", str(tmp_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=180) == 0, proc.stderr.read()
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 2 and not list(tmp_path.glob(".*.tmp"))
    assert len({read_record(f)["run_id"] for f in files}) == 2


def test_a_version_1_record_reads_through_the_migration():
    """tests/data/record_v1.json was written by the first release of the record format."""
    raw = json.loads((DATA / "record_v1.json").read_text())
    assert raw["schema_version"] == 1 and "precision" not in raw and "warmup_s" not in raw["timings"]
    record = read_record(DATA / "record_v1.json")
    assert record["schema_version"] == SCHEMA_VERSION
    assert (record["precision"], record["channels_last"], record["compile"]) == ("fp32", False, False)
    assert record["timings"]["warmup_s"] == 0.0 and record["timings"]["train_s"] == raw["timings"]["train_s"]
    assert record["metrics"]["test_accuracy"] == raw["metrics"]["test_accuracy"]
    assert flatten(record, DATA / "record_v1.json")["variant"] == "tensor fp32"


@pytest.mark.parametrize("version", [0, -1, "2", True, None])
def test_schema_versions_never_written_are_refused(tmp_path, version):
    path = tmp_path / "odd.json"
    path.write_text(json.dumps({"schema_version": version}))
    with pytest.raises(RecordError, match=r"odd\.json"):
        read_record(path)


def test_recipe_names_cannot_write_outside_the_results_folder(run_cli, tmp_path, smoke):
    plugin = tmp_path / "escape.py"
    plugin.write_text(
        textwrap.dedent(
            """
            from cifar_bench import Recipe, hookimpl

            @hookimpl
            def register_recipes(register):
                register(Recipe(name="../../escaped", model="net", loss="cross_entropy", optimizer="sgd",
                                transform="tutorial", hyperparameters={"batch_size": 4, "epochs": 1, "lr": 0.001}))
            """
        )
    )
    results = tmp_path / "deep" / "results"
    result = run_cli("run", "../../escaped", *smoke, "-p", plugin, "--results-dir", results)
    assert result.code == 0, result
    (written,) = results.glob("*.json")
    assert written.parent == results and ".." not in written.name
    assert not list(tmp_path.glob("*.json")) and not list((tmp_path / "deep").glob("*.json"))


# -- determinism ------------------------------------------------------------------


def test_deterministic_runs_give_identical_epoch_losses(run_cli, tmp_path):
    args = ("--dataset", "synthetic", "--limit-train", "300", "--limit-test", "50", "--epochs", "2", "--quiet",
            "--deterministic", "--seed", "7")  # fmt: skip
    for name in ("a", "b"):
        assert run_cli("run", "baseline", *args, "--results-dir", tmp_path / name).code == 0
    (a,), (b,) = (list((tmp_path / n).glob("*.json")) for n in ("a", "b"))
    a, b = read_record(a), read_record(b)
    assert a["deterministic"] is True and b["deterministic"] is True
    assert a["metrics"]["epoch_loss"] == b["metrics"]["epoch_loss"]
    assert a["metrics"]["test_accuracy"] == b["metrics"]["test_accuracy"]


# -- property-based ---------------------------------------------------------------

FLAGS = ["--epochs", "--batch-size", "--seed", "--limit-train", "--limit-test", "--device", "--precision", "--set",
         "--target-acc", "--loader", "--repeats", "--threads", "--model", "-p", "--quiet", "--compile"]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(FLAGS), st.text(max_size=12)), max_size=8))
def test_any_run_command_line_parses_or_gets_the_clean_error(argv):
    parser = cli.build_parser()
    try:
        args = parser.parse_args(["run", "baseline", *argv])
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    except SystemExit as exc:  # --help and --version exit 0 by design
        assert exc.code == 0
        return
    assert args.recipe == "baseline" and args.func is cmd_run


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
record_like = st.fixed_dictionaries(
    {"schema_version": st.one_of(st.integers(-1, SCHEMA_VERSION + 1), json_values)},
    optional={
        key: json_values
        for key in (
            "run_id",
            "status",
            "recipe",
            "device",
            "timings",
            "metrics",
            "throughput",
            "environment",
            "dataset",
            "hyperparameters",
            "precision",
            "compile",
            "reference",
            "timings_ratio",
        )
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(record_like, json_values))
def test_any_json_file_reads_as_a_record_or_gets_the_clean_error(tmp_path, data):
    path = tmp_path / "any.json"
    path.write_text(json.dumps(data))
    try:
        record = read_record(path)
        flatten(record, path)
    except RecordError as exc:
        assert "any.json" in str(exc)


def test_every_test_named_in_the_reliability_table_exists():
    """docs/reliability.md maps each case to a test; a renamed or deleted test must not leave a stale row."""
    import re

    text = (Path(__file__).parents[1] / "docs" / "reliability.md").read_text()
    named = re.findall(r"`(?:tests/)?(test_\w+\.py)::(test_\w+)", text)
    assert len(named) >= 20
    for file, name in named:
        source = (Path(__file__).parent / file).read_text()
        assert f"def {name}(" in source, f"docs/reliability.md names {file}::{name}, which does not exist"
