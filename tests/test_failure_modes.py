"""Failure modes found by an adversarial pass: bad results folders, file modes, hostile record files,
symlink loops, temporary files of killed writes, SIGTERM, absent devices, and smaller bad inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from record_factory import record, write

from cifar_bench import files
from cifar_bench.results import store
from cifar_bench.results.reader import load_runs
from cifar_bench.results.store import RecordError, read_record
from cifar_bench.training.session import Session


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

    monkeypatch.setattr(store, "temp_file", read_only)
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
    real_write = files.write_json_atomic

    def full_disk(path, data):
        if path.parent == results:
            raise OSError(28, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(store, "write_json_atomic", full_disk)
    result = run_cli("run", "baseline", *smoke, "--results-dir", results)
    assert result.code == 0, result
    (kept,) = (here / "cifar-bench-unsaved").glob("*.json")
    assert read_record(kept)["status"] == "ok"
    assert "No space left on device" in result.err and str(kept) in result.err


# -- 2. file modes -------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_records_and_caches_get_the_mode_the_umask_gives(tmp_path, umask):
    from cifar_bench.training.data import TensorSplit, _write_cache

    old = os.umask(umask)
    try:
        path = files.write_json_atomic(tmp_path / "r.json", {"a": 1})
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


def test_a_suite_resumes_from_a_folder_holding_an_odd_file(run_cli, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for name, make in BAD_FILES.items():
        make(results / f"odd-{name}.json")
    suite = tmp_path / "suite.toml"
    suite.write_text(
        '[[runs]]\nrecipes = "baseline"\ndataset = "synthetic"\nepochs = 1\nlimit_train = 40\nlimit_test = 20\n'
    )
    first = run_cli("suite", suite, "--results-dir", results, "--quiet")
    assert first.code == 0 and all(f"odd-{name}.json" in first.err for name in BAD_FILES), first
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
    from cifar_bench.execution import suite
    from cifar_bench.results.compare import Settings, compare_runs
    from cifar_bench.results.report import render, run_table, summarize

    folder = write(tmp_path / f"fuzz-{time.monotonic_ns()}", record(run_id="good"))
    (folder / "fuzzed.json").write_text(json.dumps(data))
    messages: list[str] = []
    runs = load_runs([folder], report=messages.append).runs
    assert len(runs) + len(messages) == 2 and all("fuzzed.json" in m for m in messages)
    render(summarize(runs), "text")
    run_table(runs.to_dict("records"))
    ok = runs[runs.status == "ok"]
    if len(ok) and ok.recipe.nunique() == 1:
        compare_runs(ok, ok, Settings())
    skipped: list[str] = []
    found = suite.records_by_key(folder, {"k"}, report=skipped.append)
    assert skipped == messages  # one judge of what is a record, for every reader
    assert all(isinstance(r["suite_key"], str) for group in found.values() for r in group)


# -- 4. symlinked folders are read once ------------------------------------------------------


def test_a_symlink_loop_in_an_image_folder_is_refused_naming_the_link(run_cli, image_folder, tmp_path):
    (image_folder / "train" / "cat" / "loop").symlink_to(".")
    result = run_cli("run", "baseline", "--data-dir", image_folder, "--results-dir", tmp_path / "r", "--quiet")
    assert result.code == 2, result
    assert str(image_folder / "train" / "cat" / "loop") in result.err and "symlink" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_a_symlinked_class_folder_is_still_read(image_folder, tmp_path):
    from cifar_bench.training.data import read_image_folder

    elsewhere = tmp_path / "elsewhere"
    (image_folder / "train" / "frog").rename(elsewhere)
    (image_folder / "train" / "frog").symlink_to(elsewhere)
    assert len(read_image_folder(image_folder).train) == 24


# -- 5. temporary files of killed writes ------------------------------------------------------


def _stale(path: Path, size: int = 10) -> Path:
    path.write_bytes(b"x" * size)
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


def test_temporary_files_of_killed_writes_are_removed_at_the_next_start(run_cli, tmp_path, smoke, image_folder):
    results, cache = tmp_path / "results", tmp_path / "cache"
    results.mkdir()
    cache.mkdir()
    stale_record = _stale(results / ".20260101T000000Z-baseline-cpu-0000.json.abcd1234.tmp")
    fresh_record = results / ".20260101T000000Z-baseline-cpu-1111.json.efgh5678.tmp"
    fresh_record.write_text("a write under way in another process")
    stale_cache = _stale(cache / ".cifar10-0123456789abcdef.pt.wxyz9876.tmp", 1000)
    args = ("--data-dir", image_folder, "--epochs", "1", "--quiet", "--cache-dir", cache)
    result = run_cli("run", "baseline", *args, "--results-dir", results)
    assert result.code == 0, result
    assert not stale_record.exists() and not stale_cache.exists()
    assert fresh_record.exists()  # too new to be a dead write's
    assert len(list(results.glob("*.json"))) == 1 and len(list(cache.glob("*.pt"))) == 1
    assert list(cache.glob(".*.tmp")) == []


def test_a_cache_write_killed_midway_leaves_one_temporary_file_which_the_next_start_removes(
    tmp_path, image_folder, monkeypatch
):
    from cifar_bench.training.data import load_tensors, read_image_folder

    cache = tmp_path / "cache"
    code = (
        "import os, torch\n"
        "from cifar_bench.training.data import load_tensors, read_image_folder\n"
        "def killed(obj, f, *a, **k):\n"
        "    open(f, 'wb').write(b'half a cache')\n"
        "    os.kill(os.getpid(), 9)  # kill -9 while the cache is saved\n"
        "torch.save = killed\n"
        f"load_tensors(read_image_folder({str(image_folder)!r}), {str(cache)!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    (left,) = cache.glob(".*.tmp")
    monkeypatch.setattr(files, "STALE_MARGIN_S", -3600.0)  # as if this process started long after
    assert not load_tensors(read_image_folder(image_folder), cache)[2]
    assert not left.exists() and list(cache.glob(".*.tmp")) == [] and len(list(cache.glob("*.pt"))) == 1


# -- 6. SIGTERM and interrupts at start-up ----------------------------------------------------


def test_sigterm_during_a_run_records_it_as_interrupted_and_exits_143(run_cli, tmp_path, smoke):
    plugin = tmp_path / "terminate.py"
    plugin.write_text(
        "import os, signal\n"
        "from cifar_bench import hookimpl\n\n"
        "@hookimpl\n"
        "def epoch_end(run, epoch):\n"
        "    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):  # it would kill the tests\n"
        "        raise RuntimeError('no SIGTERM handler while a run trains')\n"
        "    os.kill(os.getpid(), signal.SIGTERM)  # what CI, Kubernetes and Slurm send first\n"
    )
    out = tmp_path / "r"
    result = run_cli("run", "baseline", *smoke, "--epochs", "3", "-p", plugin, "--repeats", "2", "--results-dir", out)
    assert result.code == 143, result
    (written,) = out.glob("*.json")
    record = read_record(written)
    assert record["status"] == "interrupted" and len(record["metrics"]["epoch_loss"]) == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back after the command


def test_sigterm_to_a_real_process_is_recorded(tmp_path):
    args = [sys.executable, "-m", "cifar_bench", "run", "baseline", "--dataset", "synthetic", "--limit-train", "100",
            "--limit-test", "20", "--epochs", "1000", "--batch-size", "10", "--quiet",
            "--results-dir", str(tmp_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # "epoch 1: mean loss ...": training is under way
        if line.startswith("epoch "):
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    (written,) = tmp_path.glob("*.json")
    assert read_record(written)["status"] == "interrupted" and "record: " in out


def test_ctrl_c_while_cifar_bench_starts_is_one_line_and_exit_130(tmp_path):
    """A Ctrl-C while torch is being imported (seconds, at every start)."""
    script = Path(sys.executable).parent / "cifar-bench"
    if not script.exists():
        pytest.skip("the cifar-bench command is not installed beside this Python")
    code = (
        "import sys, runpy\n"
        "class CtrlC:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, CtrlC())\n"
        f"sys.argv = [{str(script)!r}, 'list']\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130 and proc.stderr == "cifar-bench: interrupted\n", proc.stderr


# -- 7. devices and threads ------------------------------------------------------------------


def test_a_run_whose_every_device_is_absent_is_bad_input(run_cli, tmp_path, smoke, monkeypatch, no_training):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run_cli("run", "baseline", *smoke, "--device", "cuda", "--results-dir", tmp_path)
    assert result.code == 2 and "CUDA is not available" in result.err and "--device all" in result.err, result
    assert not list(tmp_path.glob("*.json"))


def test_more_threads_than_cores_are_refused(run_cli, tmp_path, smoke, no_training):
    cores = os.cpu_count() or 1
    result = run_cli("run", "baseline", *smoke, "--threads", str(cores + 1), "--results-dir", tmp_path)
    assert result.code == 2 and f"{cores} CPU cores" in result.err, result


# -- 8. smaller bad inputs --------------------------------------------------------------------


def test_images_of_mixed_sizes_name_the_odd_file(image_folder, tmp_path):
    from PIL import Image

    from cifar_bench.errors import DataError
    from cifar_bench.training.data import load_tensors, read_image_folder

    Image.new("RGB", (40, 32)).save(image_folder / "train" / "dog" / "0005.png")
    with pytest.raises(DataError, match=r"dog/0005\.png is 40x32"):
        load_tensors(read_image_folder(image_folder), None)


def test_a_corrupt_cache_is_warned_about_in_one_line_without_torchs_advice(image_folder, tmp_path, capsys):
    import datetime

    import torch

    from cifar_bench.training.data import load_tensors, read_image_folder

    ds = read_image_folder(image_folder)
    load_tensors(ds, tmp_path)
    (cache_file,) = tmp_path.glob("*.pt")
    torch.save({"format": 1, "when": datetime.date(2020, 1, 1)}, cache_file)  # weights_only refuses a date
    assert not load_tensors(ds, tmp_path)[2]
    (message,) = capsys.readouterr().err.splitlines()  # one line, in cifar-bench's own format
    assert message.startswith("cifar-bench: warning: ignoring data cache")
    assert "weights_only" not in message and "rebuilding" in message


def test_a_forged_cache_with_the_right_name_but_wrong_contents_is_rebuilt(image_folder, tmp_path, capsys):
    import torch

    from cifar_bench.training.data import load_tensors, read_image_folder

    ds = read_image_folder(image_folder)
    train, test, _ = load_tensors(ds, tmp_path)
    (cache_file,) = tmp_path.glob("*.pt")
    blob = torch.load(cache_file, weights_only=True)
    for key, value in (("train_images", train.images[:5]), ("train_labels", train.labels[:5])):
        blob[key] = value  # five images where the data has 24
    blob["test_labels"] = test.labels + 7  # and labels of classes the data has not
    torch.save(blob, cache_file)
    again, _, hit = load_tensors(ds, tmp_path)
    assert "holds 5 train images" in capsys.readouterr().err
    assert not hit and len(again) == 24
    assert load_tensors(ds, tmp_path)[2]  # rebuilt: the next run reads it


def test_a_data_dir_that_is_a_file_says_so(run_cli, tmp_path):
    (tmp_path / "afile").write_text("")
    result = run_cli("run", "baseline", "--data-dir", tmp_path / "afile", "--results-dir", tmp_path / "r")
    assert result.code == 2 and "is a file, not a folder" in result.err, result


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--seed", "18446744073709551616"), "--seed: must be between 0 and 2**63-1"),
        (("--seed", str(2**63 - 1), "--repeats", "2"), "runs past the largest seed"),
        (("--set", "num_classes=5"), "drop --set num_classes"),
        (("--nproc", "2", "--dist-timeout", "-5"), "--dist-timeout: must be a positive number of seconds"),
    ],
    ids=["seed-too-big", "seed-repeats-too-big", "set-num-classes", "negative-dist-timeout"],
)
def test_more_bad_input_is_one_line_and_exit_2(run_cli, tmp_path, smoke, no_training, args, message):
    result = run_cli("run", "baseline", *smoke, *args, "--results-dir", tmp_path)
    assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1, result


def test_a_broken_plugin_is_refused_before_torchrun_starts(run_cli, tmp_path, smoke, monkeypatch):
    from cifar_bench.execution import torchrun

    def no_torchrun(*args, **kwargs):
        raise AssertionError("torchrun started")

    monkeypatch.setattr(torchrun, "launch", no_torchrun)
    broken = tmp_path / "broken.py"
    broken.write_text("raise ImportError('this plugin is broken')\n")
    result = run_cli("run", "baseline", *smoke, "--nproc", "2", "-p", broken, "--results-dir", tmp_path / "r")
    assert result.code == 2 and "broken" in result.err and len(result.err.strip().splitlines()) == 1, result


def test_classes_a_small_test_subset_leaves_out_are_not_applicable_not_zero(run_cli, tmp_path, smoke):
    result = run_cli("run", "baseline", *smoke, "--limit-test", "3", "--results-dir", tmp_path)
    assert result.code == 0, result
    (written,) = tmp_path.glob("*.json")
    per_class = read_record(written)["metrics"]["per_class_accuracy"]
    assert len(per_class) == 10 and sum(value is None for value in per_class.values()) == 7
    assert result.out.count("n/a (no test images)") == 7
