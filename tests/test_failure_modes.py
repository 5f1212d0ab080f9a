"""Failure modes found by an adversarial pass: bad results folders, file modes, hostile record files,
symlink loops, temporary files of killed writes, SIGTERM, absent devices, and smaller bad inputs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from record_factory import record, write

from cifar_bench import records
from cifar_bench.records import RecordError, read_record
from cifar_bench.report import load_runs
from cifar_bench.runner import Session


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any run starts: the checks under test must come before training."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("a run started before the bad input was refused")

    monkeypatch.setattr(Session, "run", refuse)


# -- 1. the results folder is checked before training ------------------------------------


def _results_file(tmp_path: Path) -> Path:
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path / "afile"


def _results_under_a_file(tmp_path: Path) -> Path:
    return _results_file(tmp_path) / "results"


@pytest.mark.parametrize(
    ("make", "message"),
    [(_results_file, "is a file, not a folder"), (_results_under_a_file, "Not a directory")],
    ids=["a-file", "under-a-file"],
)
def test_a_results_dir_that_cannot_hold_records_is_refused_before_training(
    run_cli, tmp_path, smoke, no_training, make, message
):
    result = run_cli("run", "baseline", *smoke, "--repeats", "3", "--results-dir", make(tmp_path))
    assert result.code == 2, result
    assert message in result.err and "--results-dir" in result.err and len(result.err.strip().splitlines()) == 1


def test_a_read_only_results_dir_is_refused_before_training(run_cli, tmp_path, smoke, no_training, monkeypatch):
    # Tests may run as root, whom no folder mode stops: make the probe meet what a read-only folder gives.
    def read_only(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(records, "temp_file", read_only)
    result = run_cli("run", "baseline", *smoke, "--results-dir", tmp_path / "ro")
    assert result.code == 2 and "Permission denied" in result.err, result


def test_a_suite_with_a_results_dir_that_is_a_file_is_refused_before_its_first_run(run_cli, tmp_path, no_training):
    suite = tmp_path / "suite.toml"
    suite.write_text('[[runs]]\nrecipes = "baseline"\ndataset = "synthetic"\nepochs = 1\n')
    result = run_cli("suite", suite, "--results-dir", _results_file(tmp_path))
    assert result.code == 2 and "is a file, not a folder" in result.err, result


def test_a_record_the_results_dir_refuses_after_training_is_kept_elsewhere(run_cli, tmp_path, smoke, monkeypatch):
    results, here = tmp_path / "results", tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    real_write = records.write_json_atomic

    def full_disk(path, data):
        if path.parent == results:
            raise OSError(28, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(records, "write_json_atomic", full_disk)
    result = run_cli("run", "baseline", *smoke, "--results-dir", results)
    assert result.code == 0, result
    (kept,) = (here / "cifar-bench-unsaved").glob("*.json")
    assert read_record(kept)["status"] == "ok"
    assert "No space left on device" in result.err and str(kept) in result.err


# -- 2. file modes -------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_records_and_caches_get_the_mode_the_umask_gives(tmp_path, umask):
    from cifar_bench.data import TensorSplit, _write_cache

    old = os.umask(umask)
    try:
        path = records.write_json_atomic(tmp_path / "r.json", {"a": 1})
        split = TensorSplit(records_images(), records_labels())
        _write_cache(tmp_path / "c.pt", "fp", split, split)
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~umask
    assert ((tmp_path / "c.pt").stat().st_mode & 0o777) == 0o666 & ~umask


def records_images():
    import torch

    return torch.zeros(2, 3, 4, 4, dtype=torch.uint8)


def records_labels():
    import torch

    return torch.tensor([0, 1])


# -- 3. one odd file never hides a folder ------------------------------------------------------


def _deep(path: Path) -> None:
    path.write_text("[" * 100_000 + "]" * 100_000)


def _long_int(path: Path) -> None:
    path.write_text('{"schema_version": 2, "seed": ' + "9" * 5000 + "}")


def _huge_timing(path: Path) -> None:
    bad = record(run_id="huge")
    text = json.dumps(bad).replace('"train_s": 10.0', '"train_s": ' + "9" * 400)
    path.write_text(text)


def _suite_key_list(path: Path) -> None:
    path.write_text(json.dumps({"schema_version": 2, "suite_key": ["a"]}))


BAD_FILES = {"deep": _deep, "long-int": _long_int, "huge-timing": _huge_timing, "suite-key-list": _suite_key_list}


@pytest.mark.parametrize("make", list(BAD_FILES.values()), ids=list(BAD_FILES))
def test_one_odd_file_is_named_and_report_compare_plot_read_the_rest(run_cli, tmp_path, make):
    folder = write(tmp_path / "runs", record(train_s=10.0), record(train_s=11.0))
    make(folder / "odd.json")
    with pytest.raises(RecordError, match=r"odd\.json"):
        read_record(folder / "odd.json")
    report = run_cli("report", folder)
    assert report.code == 0 and "baseline" in report.out, report
    assert [line for line in report.err.splitlines() if "odd.json" in line] == [report.err.strip()]
    clean = write(tmp_path / "clean", record(train_s=10.0), record(train_s=10.5))
    compare = run_cli("compare", folder, clean)  # exit 1 would read as "regression"
    assert compare.code == 0 and compare.err.count("odd.json") == 1, compare
    plot = run_cli("plot", folder, "--output", tmp_path / "p.png")
    assert plot.code == 0 and (tmp_path / "p.png").exists(), plot


@pytest.mark.parametrize("make", list(BAD_FILES.values()), ids=list(BAD_FILES))
def test_a_suite_resumes_from_a_folder_holding_an_odd_file(run_cli, tmp_path, make):
    results = tmp_path / "results"
    results.mkdir()
    make(results / "odd.json")
    suite = tmp_path / "suite.toml"
    suite.write_text(
        '[[runs]]\nrecipes = "baseline"\ndataset = "synthetic"\nepochs = 1\nlimit_train = 40\nlimit_test = 20\n'
    )
    first = run_cli("suite", suite, "--results-dir", results, "--quiet")
    assert first.code == 0 and "odd.json" in first.err, first
    again = run_cli("suite", suite, "--results-dir", results, "--quiet")
    assert again.code == 0 and "1 done before, 0 to run" in again.out, again


# Any JSON value, and records whose fields (at any depth) are replaced by any JSON value.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))


@st.composite
def damaged_records(draw):
    data = record(run_id="damaged")
    paths = [p for p in _paths(data) if p]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        target = data
        for key in path[:-1]:
            target = target.get(key) if isinstance(target, dict) else None
        if isinstance(target, dict):
            if draw(st.booleans()):
                target[path[-1]] = draw(json_values)
            else:
                target.pop(path[-1], None)
    return data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(damaged_records(), json_values))
def test_every_reader_reads_or_skips_any_record_with_one_warning(tmp_path, data):
    """report, compare and plot (load_runs) and suite resume (records_by_key) agree, and never crash."""
    from cifar_bench import cli, suite
    from cifar_bench.compare import Settings, compare_runs
    from cifar_bench.report import render, summarize

    folder = write(tmp_path / f"fuzz-{time.monotonic_ns()}", record(run_id="good"))
    (folder / "fuzzed.json").write_text(json.dumps(data))
    messages: list[str] = []
    runs = load_runs([folder], report=messages.append).runs
    assert len(runs) + len(messages) == 2 and all("fuzzed.json" in m for m in messages)
    render(summarize(runs), "text")
    cli.run_table(runs.to_dict("records"))
    ok = runs[runs.status == "ok"]
    if len(ok) and ok.recipe.nunique() == 1:
        compare_runs(ok, ok, Settings())
    skipped: list[str] = []
    found = suite.records_by_key(folder, {"k"}, report=skipped.append)
    assert bool(skipped) == bool(messages) or not messages  # flatten may refuse more than read_record
    assert all(isinstance(r["suite_key"], str) for group in found.values() for r in group)
