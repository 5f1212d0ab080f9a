"""``--track NAME[=ARG]``: trackers made once per command, told of every run, closed, never failing a run.

The first three tests are the issue's "done when" (issue 28), run through the command line in this
process: ``--track mlflow`` in an empty folder, ``--track tensorboard``, and MLflow at a closed port. The
others load a recording tracker from a ``-p`` plugin file (``register_trackers``) to see where trackers are
made, what they are told and when they are closed; data-parallel runs start real torchrun ranks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tracker_extras import needs_mlflow, needs_tensorboard

import cifar_bench
from cifar_bench import UsageError
from cifar_bench.execution.tracking import TrackSpec, parse

#: The issue's command, less ``--track``.
DONE_WHEN = ["run", "baseline", "--dataset", "synthetic", "--epochs", "1", "--limit-train", "256",
             "--limit-test", "128"]  # fmt: skip
#: The quickest run for the rest.
TINY = ["run", "baseline", "--dataset", "synthetic", "--epochs", "1", "--limit-train", "64", "--limit-test", "20",
        "--threads", "1", "--quiet"]  # fmt: skip
TIMEOUT_S = 240  # a data-parallel command, ranks started by torchrun on a loaded 2-core machine

#: A plugin with a tracker that writes down what it is told (its hooks take what they need, as pluggy's may).
RECORDER = """
from cifar_bench import UsageError, hookimpl

made = []  # the argument of each tracker made
calls = []  # (hook, argument, detail), in order


class Recorder:
    def __init__(self, argument):
        self.argument = argument

    def run_start(self, run):
        calls.append(("run_start", self.argument, run.run_id))

    def train_progress(self, run, progress):
        if self.argument == "raise":
            raise RuntimeError("the tracker's server went away")
        if self.argument == "interrupt":
            raise KeyboardInterrupt  # Ctrl-C, as it lands in whatever runs

    def epoch_end(self, epoch):
        calls.append(("epoch_end", self.argument, epoch.epoch))

    def run_end(self, record):
        calls.append(("run_end", self.argument, record.run_id))

    def close(self):
        calls.append(("close", self.argument, None))


def recorder(argument):
    if argument == "bad":
        raise UsageError("recorder=bad: no such setting")
    if argument == "unreachable":
        raise ConnectionError("no server at localhost:1")
    made.append(argument)
    return Recorder(argument)


@hookimpl
def register_trackers(register):
    register("recorder", recorder, "writes down what it is told")
    register("hookless", lambda argument: object(), "has none of the hooks")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def records(folder: Path) -> list[dict]:
    """The records in ``folder``, in the order they ran (seed, then run id: two may start in one second)."""
    found = [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.is_dir() else []
    return sorted(found, key=lambda r: (r["seed"], r["run_id"]))


def mentions(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if word in line.lower()]


@pytest.fixture
def recorder(tmp_path, monkeypatch):
    """The recording plugin as a file for ``-p``; returns (path, its module once loaded)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tmp_path / "recorder_plugin.py"
    path.write_text(RECORDER)
    return path, lambda: sys.modules["cifar_bench_local_recorder_plugin"]


# -- the "done when" --------------------------------------------------------------------


@needs_mlflow
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")  # in MLflow's SQLite store
def test_track_mlflow_in_an_empty_folder_is_found_by_mlflow_there(tmp_path, monkeypatch, run_cli):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    done = run_cli(*DONE_WHEN, "--track", "mlflow")
    assert done.code == 0, done
    (record,) = records(tmp_path / "results")
    # The experiment is named after the recipe, so it is not MLflow's active (Default) one: search them all.
    found = mlflow.search_runs(search_all_experiments=True)
    assert len(found) == 1 and len(mlflow.search_runs(experiment_names=["baseline"])) == 1
    assert found["params.lr"][0] == "0.001"
    assert found["metrics.test_accuracy"][0] == record["metrics"]["test_accuracy"]
    assert found["tags.mlflow.runName"][0] == record["run_id"] and found["status"][0] == "FINISHED"
    assert "cifar-bench: warning: mlflow" not in done.err


@needs_tensorboard
def test_track_tensorboard_writes_the_records_epoch_loss_under_runs_run_id(tmp_path, monkeypatch, run_cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    done = run_cli(*DONE_WHEN, "--track", "tensorboard")
    assert done.code == 0, done
    (record,) = records(tmp_path / "results")
    events = EventAccumulator(str(tmp_path / "runs" / record["run_id"]))
    events.Reload()
    losses = [(event.step, event.value) for event in events.Scalars("epoch_loss")]
    assert [step for step, _ in losses] == [1]
    # TensorBoard keeps scalars as 32-bit floats: the record's value to float32 precision.
    assert [value for _, value in losses] == pytest.approx(record["metrics"]["epoch_loss"], rel=1e-6)


@needs_mlflow
def test_track_mlflow_at_a_closed_port_exits_0_with_the_record_and_one_warning(tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    done = run_cli(*DONE_WHEN, "--track", "mlflow")
    assert done.code == 0, done
    (record,) = records(tmp_path / "results")
    assert record["status"] == "ok" and record["error"] is None
    (warning,) = mentions(done.err, "mlflow")
    assert warning.startswith("cifar-bench: warning: mlflow: ") and "cannot reach the tracking server" in warning
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()  # no local fallback


# -- names, arguments, and a tracker that is not installed ----------------------------------------------


def test_an_unknown_tracker_is_refused_with_the_closest_names_before_anything_trains(tmp_path, run_cli):
    done = run_cli(*TINY, "--results-dir", tmp_path, "--track", "mlfow")
    assert done.code == 2
    assert done.err.strip() == (
        "cifar-bench: error: unknown tracker 'mlfow': did you mean 'mlflow'? (see 'cifar-bench list')"
    )
    assert records(tmp_path) == []


def test_the_trackers_are_listed_with_their_plugin(run_cli):
    listing = run_cli("list")
    rows = {tuple(line.split()[:3]) for line in listing.out.splitlines()}
    assert {("tracker", "mlflow", "trackers"), ("tracker", "tensorboard", "trackers")} <= rows


def test_track_values_parse_into_names_and_arguments():
    expected = [TrackSpec("mlflow"), TrackSpec("tensorboard", "logs/a=b")]
    assert parse(["mlflow", "tensorboard=logs/a=b", "mlflow"]) == expected
    assert parse(["mlflow"], "sweep") == [TrackSpec("mlflow", "sweep")]  # --mlflow-experiment is mlflow's argument
    assert parse(["mlflow=sweep"], "sweep") == [TrackSpec("mlflow", "sweep")]
    assert TrackSpec("tensorboard", "runs").text == "tensorboard=runs"
    for values, experiment, message in [
        (["=runs"], None, "name a tracker"),
        ("mlflow", None, "a list of tracker names"),
        (["tensorboard"], "sweep", "--mlflow-experiment names the experiment of --track mlflow"),
        (["mlflow=a"], "b", "name two experiments"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse(values, experiment)


def test_an_empty_argument_is_refused(tmp_path, run_cli):
    done = run_cli(*TINY, "--results-dir", tmp_path, "--track", "tensorboard=")
    assert done.code == 2 and "--track tensorboard=DIR: give a name after '='" in done.err
    assert records(tmp_path) == []


def test_trackers_not_installed_say_so_once_each_and_lose_nothing(tmp_path, monkeypatch, run_cli):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if absent: importing it raises ImportError
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    done = run_cli(*TINY, "--repeats", "2", "--results-dir", tmp_path / "r", "--track", "mlflow",
                   "--track", f"tensorboard={tmp_path / 'tb'}")  # fmt: skip
    assert done.code == 0, done
    assert [r["status"] for r in records(tmp_path / "r")] == ["ok", "ok"]
    (mlflow_warning,) = mentions(done.err, "mlflow")
    assert "mlflow: not installed" in mlflow_warning and "pip install 'cifar-bench[mlflow]'" in mlflow_warning
    (tensorboard_warning,) = mentions(done.err, "tensorboard")
    assert "pip install 'cifar-bench[tensorboard]'" in tensorboard_warning
    assert not (tmp_path / "tb").exists()


# -- where trackers are made, what they are told, when they are closed --------------------------------


def test_one_tracker_per_command_told_of_every_run_and_closed_after_the_last(tmp_path, recorder, run_cli):
    path, plugin = recorder
    done = run_cli(*TINY, "--repeats", "2", "--results-dir", tmp_path / "r", "-p", path, "--track", "recorder=x",
                   "--track", "recorder=x")  # fmt: skip
    assert done.code == 0, done
    first, second = (r["run_id"] for r in records(tmp_path / "r"))
    assert plugin().made == ["x"]  # once per command, the argument after '=' (the same --track twice: once)
    assert plugin().calls == [
        ("run_start", "x", first), ("epoch_end", "x", 1), ("run_end", "x", first),
        ("run_start", "x", second), ("epoch_end", "x", 1), ("run_end", "x", second),
        ("close", "x", None),
    ]  # fmt: skip


def test_a_tracker_that_raises_is_one_warning_and_the_runs_go_on(tmp_path, recorder, run_cli):
    path, plugin = recorder
    done = run_cli(*TINY, "--repeats", "2", "--results-dir", tmp_path / "r", "-p", path, "--track", "recorder=raise")
    assert done.code == 0, done
    assert [r["status"] for r in records(tmp_path / "r")] == ["ok", "ok"]
    (warning,) = mentions(done.err, "recorder")
    assert warning == (
        "cifar-bench: warning: tracker 'recorder=raise' (plugin 'recorder_plugin') stopped: recorder: train_progress "
        "failed: RuntimeError: the tracker's server went away; the runs are recorded without it"
    )
    hooks = [hook for hook, _, _ in plugin().calls]
    assert hooks == ["run_start", "close"]  # told nothing after it failed, and still closed


def test_a_tracker_that_cannot_be_made_is_one_warning(tmp_path, recorder, run_cli):
    path, _ = recorder
    done = run_cli(*TINY, "--results-dir", tmp_path / "r", "-p", path, "--track", "recorder=unreachable")
    assert done.code == 0, done
    assert [r["status"] for r in records(tmp_path / "r")] == ["ok"]
    (warning,) = mentions(done.err, "recorder")
    assert "could not be made: ConnectionError: no server at localhost:1" in warning


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("recorder=bad", "cifar-bench: error: recorder=bad: no such setting"),
        ("hookless", "tracker 'hookless' factory returned object, which has none of the hooks run_start"),
    ],
)
def test_a_bad_argument_or_a_tracker_without_hooks_is_exit_2_before_anything_trains(
    tmp_path, recorder, run_cli, spec, message
):
    path, _ = recorder
    done = run_cli(*TINY, "--results-dir", tmp_path / "r", "-p", path, "--track", spec)
    assert done.code == 2 and message in done.err, done
    assert records(tmp_path / "r") == []


def test_trackers_made_before_a_refused_one_are_closed(tmp_path, recorder, run_cli):
    path, plugin = recorder
    done = run_cli(*TINY, "--results-dir", tmp_path, "-p", path, "--track", "recorder=x", "--track", "recorder=bad")
    assert done.code == 2, done
    assert plugin().made == ["x"] and plugin().calls == [("close", "x", None)]


def test_trackers_are_closed_after_an_interrupted_run(tmp_path, recorder, run_cli):
    path, plugin = recorder
    done = run_cli(*TINY, "--results-dir", tmp_path / "r", "-p", path, "--track", "recorder=interrupt",
                   "--track", "recorder=y")  # fmt: skip
    assert done.code == 130, done
    assert [r["status"] for r in records(tmp_path / "r")] == ["interrupted"]
    assert plugin().calls[-2:] == [("close", "interrupt", None), ("close", "y", None)]
    assert ("run_end", "y", records(tmp_path / "r")[0]["run_id"]) in plugin().calls  # the record, told


@needs_tensorboard
def test_the_python_api_takes_track(tmp_path):
    record = cifar_bench.run("baseline", dataset="synthetic", epochs=1, limit_train=64, limit_test=20, threads=1,
                             track=[f"tensorboard={tmp_path / 'tb'}"])  # fmt: skip
    assert [p.name for p in (tmp_path / "tb").iterdir()] == [record.run_id]


def test_a_suite_tracks_its_runs_from_the_file_or_the_command_line(tmp_path, recorder, run_cli):
    path, plugin = recorder
    suite = tmp_path / "suite.toml"
    suite.write_text(
        'track = "recorder=file"\n[defaults]\ndataset = "synthetic"\nlimit_train = 64\nlimit_test = 20\n'
        'epochs = 1\nthreads = 1\n[[runs]]\nrecipes = "baseline"\nseeds = [0, 1]\n'
    )
    done = run_cli("suite", suite, "--quiet", "--results-dir", tmp_path / "a", "-p", path)
    assert done.code == 0, done
    ids = [r["run_id"] for r in records(tmp_path / "a")]
    assert [(hook, detail) for hook, _, detail in plugin().calls if hook in ("run_end", "close")] == [
        ("run_end", ids[0]), ("run_end", ids[1]), ("close", None)
    ]  # fmt: skip
    assert plugin().made == ["file"]
    done = run_cli("suite", suite, "--quiet", "--results-dir", tmp_path / "b", "-p", path, "--track", "recorder=cli")
    assert done.code == 0 and plugin().made == ["file", "cli"], done  # the command line's, instead of the file's


# -- data-parallel runs: rank 0 makes the trackers, the launcher none ------------------------------------


def cifar_bench_process(*args, cwd: Path) -> subprocess.CompletedProcess:
    """``cifar-bench ARGS`` in a fresh process (torchrun needs one), one thread per rank."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CIFAR_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    command = [sys.executable, "-m", "cifar_bench", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=cwd, check=False)


def test_a_data_parallel_run_is_tracked_once_by_rank_0(tmp_path, recorder):
    path, _ = recorder
    log = tmp_path / "calls.jsonl"
    path.write_text(path.read_text().replace("calls.append(", "_write(") + _WRITER.format(log=str(log)))
    done = cifar_bench_process(*TINY, "--batch-size", "8", "--nproc", "2", "--results-dir", tmp_path / "r",
                               "-p", path, "--track", "recorder=dp", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (record,) = records(tmp_path / "r")
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert {rank for rank, *_ in calls} == {"0"}  # rank 0 alone: not rank 1, nor the launcher (no RANK)
    assert [(hook, detail) for _, hook, _, detail in calls] == [
        ("run_start", record["run_id"]), ("epoch_end", 1), ("run_end", record["run_id"]), ("close", None)
    ]  # fmt: skip


def test_a_suites_data_parallel_run_is_told_to_the_suites_trackers_when_its_record_is_back(tmp_path, recorder):
    path, _ = recorder
    log = tmp_path / "calls.jsonl"
    path.write_text(path.read_text().replace("calls.append(", "_write(") + _WRITER.format(log=str(log)))
    suite = tmp_path / "suite.toml"
    suite.write_text('track = "recorder=s"\n[defaults]\ndataset = "synthetic"\nlimit_train = 64\nlimit_test = 20\n'
                     'epochs = 1\nthreads = 1\nbatch_size = 8\n[[runs]]\nrecipes = "baseline"\n'
                     '[[runs]]\nrecipes = "baseline"\nnproc = 2\n')  # fmt: skip
    done = cifar_bench_process("suite", suite, "--quiet", "--results-dir", tmp_path / "r", "-p", path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    here, ranks = sorted(records(tmp_path / "r"), key=lambda r: r["distributed"] is not None)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert {rank for rank, *_ in calls} == {None}  # the suite's own process: its ranks made no tracker
    assert [(hook, detail) for _, hook, _, detail in calls] == [
        ("run_start", here["run_id"]), ("epoch_end", 1), ("run_end", here["run_id"]),
        ("run_end", ranks["run_id"]),  # only its end: it ran in other processes
        ("close", None),
    ]  # fmt: skip


#: Appended to the recording plugin when it runs in other processes: each call as a line of a file.
_WRITER = """

import json as _json
import os as _os


def _write(call):
    with open({log!r}, "a") as log:
        log.write(_json.dumps([_os.environ.get("RANK"), *call]) + "\\n")
"""


def test_ab_refuses_track_as_two_installs_would_log_twice(tmp_path, run_cli):
    side = Path(sys.executable).with_name("cifar-bench")
    result = run_cli("ab", "--a", side, "--b", side, "--results-a", tmp_path / "ra", "--results-b", tmp_path / "rb",
                     "--", *TINY, "--track", "mlflow")  # fmt: skip
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result
    assert "--track cannot be used with it" in result.err
