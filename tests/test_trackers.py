"""The MLflow and TensorBoard trackers, end to end: real runs, read back with each back end's own reader.

Each tracker is loaded the way a user's plugin is, with ``-p MODULE``: the
test puts a module exposing the tracker's hooks in ``sys.modules`` (so that
it can call ``close()`` and read ``problem`` afterwards, as the harness
will). The MLflow tests talk to a real ``mlflow server`` with a SQLite store,
started once for the module in the background while the other tests run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.request
import uuid
from pathlib import Path

import pytest
from tracker_extras import HAVE_MLFLOW, needs_mlflow, needs_tensorboard

from cifar_bench import hookimpl, main
from cifar_bench.plugins.mlflow_tracker import HTTP_LIMITS, MlflowTracker, bounded_http
from cifar_bench.plugins.tensorboard_tracker import TensorboardTracker

#: The quickest real run: two epochs of 64 steps (so that losses have steps to be checked at).
TINY_RUN = ["run", "baseline", "--dataset", "synthetic", "--epochs", "2", "--limit-train", "256",
            "--limit-test", "128", "--quiet", "--threads", "1"]  # fmt: skip
STEPS_PER_EPOCH = 256 // 4  # baseline's batch of 4
#: Seconds the MLflow server may take to answer /health (it imports much; about 10 s on a quiet 2-core machine).
SERVER_START_S = 180
#: MLflow's default retries back off for over two minutes: a closed port must fail well within this (seconds).
FAIL_FAST_S = 60


def as_plugin(monkeypatch, tracker, name: str) -> str:
    """A module exposing ``tracker``'s hooks, importable as ``name``: what ``-p name`` loads."""
    module = types.ModuleType(name)
    for hook in ("run_start", "train_progress", "epoch_end", "run_end"):
        setattr(module, hook, getattr(tracker, hook))
    monkeypatch.setitem(sys.modules, name, module)
    return name


def run(tmp_path: Path, capsys, *plugins: str, extra: tuple[str, ...] = ()):
    """Run the tiny baseline with the ``-p`` plugins; returns exit code, records (in run order) and stderr."""
    results = tmp_path / "results"
    argv = [*TINY_RUN, *extra, "--results-dir", str(results)]
    for plugin in plugins:
        argv += ["-p", plugin]
    code = main(argv)
    records = sorted((json.loads(p.read_text()) for p in results.glob("*.json")), key=lambda r: r["run_id"])
    return code, records, capsys.readouterr().err


def warnings_about(err: str, word: str) -> list[str]:
    return [line for line in err.splitlines() if word in line.lower()]


# -- TensorBoard ---------------------------------------------------------------------------


@needs_tensorboard
def test_tensorboard_event_files_hold_the_record(tmp_path, capsys, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    monkeypatch.chdir(tmp_path)  # the default log folder, runs/, is relative to where the command runs
    tracker = TensorboardTracker()
    code, (record,), err = run(tmp_path, capsys, as_plugin(monkeypatch, tracker, "tb_plain"))
    tracker.close()
    assert code == 0 and tracker.problem is None, err
    folder = tmp_path / "runs" / record["run_id"]
    assert [p.is_file() for p in folder.iterdir()] == [True]  # one event file, no timestamped hparams subfolder

    events = EventAccumulator(str(folder))
    events.Reload()
    epoch_loss = [(e.step, e.value) for e in events.Scalars("epoch_loss")]
    assert [step for step, _ in epoch_loss] == [1, 2]
    # TensorBoard keeps scalars as 32-bit floats: equal to the record's to float32 precision.
    assert [value for _, value in epoch_loss] == pytest.approx(record["metrics"]["epoch_loss"], rel=1e-6)
    assert events.Scalars("test_accuracy")[-1].value == pytest.approx(record["metrics"]["test_accuracy"], rel=1e-6)
    running_steps = [e.step for e in events.Scalars("running_loss")]
    assert running_steps == sorted(running_steps) and running_steps[-1] == 2 * STEPS_PER_EPOCH  # global steps

    hparams = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(0.001)
    assert start.hparams["model"].string_value == record["components"]["model"]["name"]
    assert start.hparams["workload"].string_value == record["workload"]["key"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    assert "test_accuracy" in {m.name.tag for m in experiment.metric_infos}


@needs_tensorboard
def test_tensorboard_that_cannot_write_loses_nothing(tmp_path, capsys, monkeypatch):
    (tmp_path / "not-a-folder").write_text("")
    tracker = TensorboardTracker(tmp_path / "not-a-folder")
    code, (record,), err = run(tmp_path, capsys, as_plugin(monkeypatch, tracker, "tb_blocked"))
    assert code == 0 and record["status"] == "ok", err
    (warning,) = warnings_about(err, "tensorboard")
    assert warning.startswith("cifar-bench: warning: tensorboard: starting run ")
    assert warning.endswith("; the run is recorded without it")
    assert tracker.problem and tracker.problem in warning


def test_a_tracker_not_installed_loses_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if absent: importing it raises ImportError
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    mlflow_tracker, tensorboard_tracker = MlflowTracker(), TensorboardTracker(tmp_path / "runs")
    plugins = (
        as_plugin(monkeypatch, mlflow_tracker, "ml_absent"),
        as_plugin(monkeypatch, tensorboard_tracker, "tb_absent"),
    )
    code, (record,), err = run(tmp_path, capsys, *plugins)
    assert code == 0 and record["status"] == "ok", err
    (mlflow_warning,) = warnings_about(err, "mlflow")
    assert "mlflow: not installed" in mlflow_warning and "pip install 'cifar-bench[mlflow]'" in mlflow_warning
    (tensorboard_warning,) = warnings_about(err, "tensorboard")
    assert "tensorboard: not installed" in tensorboard_warning
    assert mlflow_tracker.problem.startswith("mlflow: not installed") and not (tmp_path / "runs").exists()


@needs_tensorboard
def test_only_rank_0_of_a_data_parallel_run_logs(tmp_path, monkeypatch):
    from cifar_bench import EpochResult, RunInfo, TrainProgress

    monkeypatch.setenv("RANK", "1")  # as torchrun sets it on the second process
    tracker = TensorboardTracker(tmp_path / "runs")
    run_info = RunInfo("r1", "baseline", "cpu", "tensor", {"lr": 0.001}, "synthetic", 8, 4, 2, 1)
    tracker.run_start(run_info)
    tracker.train_progress(run_info, TrainProgress(1, 2, 2, 8, 0.1, 2.3))
    tracker.epoch_end(run_info, EpochResult(1, 2.3, 0.1, 8))
    tracker.close()
    assert not (tmp_path / "runs").exists() and tracker.problem is None


# -- MLflow --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def mlflow_server_process(tmp_path_factory):
    """Start ``mlflow server`` (SQLite store, artifacts proxied to a folder) as soon as the module starts."""
    if not HAVE_MLFLOW:
        yield None
        return
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(folder / "server.log", "wb")  # noqa: SIM115 (closed below, after the server)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
               "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]  # fmt: skip
    # No background job runner: the tracking API needs none, and it is several more processes on 2 cores.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    yield process, f"http://127.0.0.1:{port}", folder / "server.log"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)  # the server and the uvicorn worker it started
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()


@pytest.fixture
def mlflow_server(mlflow_server_process, monkeypatch) -> str:
    """The server's URI, once it answers, as ``MLFLOW_TRACKING_URI``."""
    if mlflow_server_process is None:
        pytest.skip("mlflow is not installed (pip install -e '.[mlflow]')")
    process, uri, log = mlflow_server_process
    deadline = time.monotonic() + SERVER_START_S
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=5) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"mlflow server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.25)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


# These need no server: they run while it starts.


@needs_mlflow
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")  # in MLflow's SQLite store
def test_mlflow_in_an_empty_folder_uses_its_local_default(tmp_path, capsys, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = MlflowTracker()
    code, (record,), err = run(tmp_path, capsys, as_plugin(monkeypatch, tracker, "ml_local"))
    tracker.close()
    assert code == 0 and tracker.problem is None, err
    found = mlflow.search_runs(search_all_experiments=True)  # where MLflow itself looks by default, here
    assert len(found) == 1
    assert found["params.lr"][0] == "0.001"
    assert found["metrics.test_accuracy"][0] == record["metrics"]["test_accuracy"]


@needs_mlflow
def test_mlflow_at_a_closed_port_loses_nothing_and_fails_fast(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    for name in HTTP_LIMITS:
        monkeypatch.delenv(name, raising=False)  # MLflow's defaults, but for this tracker's bounds
    tracker = MlflowTracker()
    started = time.monotonic()
    code, records, err = run(tmp_path, capsys, as_plugin(monkeypatch, tracker, "ml_closed"), extra=("--repeats", "2"))
    seconds = time.monotonic() - started
    assert code == 0 and [r["status"] for r in records] == ["ok", "ok"], err
    (warning,) = warnings_about(err, "mlflow")  # one, for both runs: tracking stopped at the first failure
    assert warning.startswith("cifar-bench: warning: mlflow: starting run ")
    assert "cannot reach the tracking server" in warning and "Connection refused" in warning
    assert warning.endswith("; the run is recorded without it")
    assert tracker.problem in warning
    print(f"closed port: two runs and the failed tracking took {seconds:.1f} s")
    assert seconds < FAIL_FAST_S  # a bound on retries, not a speed figure: MLflow's own would take minutes


@needs_mlflow
def test_mlflow_http_bounds_are_mlflows_own_and_leave_the_users_settings(monkeypatch):
    from mlflow import environment_variables as settings

    for name in HTTP_LIMITS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")  # the user's: kept
    with bounded_http():
        assert settings.MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 77
        retries = settings.MLFLOW_HTTP_REQUEST_MAX_RETRIES
        assert retries.get() < retries.default
        assert all(hasattr(settings, name) for name in HTTP_LIMITS)  # every name is one MLflow reads
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # nothing outlives the tracker's own calls
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"


# These talk to the server.


@needs_mlflow
def test_mlflow_run_reads_back_through_mlflow(tmp_path, capsys, monkeypatch, mlflow_server):
    import mlflow

    tracker = MlflowTracker()
    code, (record,), err = run(tmp_path, capsys, as_plugin(monkeypatch, tracker, "ml_plain"))
    tracker.close()
    assert code == 0 and tracker.problem is None, err
    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("baseline")  # named after the recipe
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # MLflow's UI: a training view
    (found,) = client.search_runs([experiment.experiment_id],
                                  f"tags.`mlflow.runName` = '{record['run_id']}'")  # fmt: skip
    run_id, data = found.info.run_id, found.data
    assert found.info.status == "FINISHED"
    assert data.params["lr"] == "0.001"
    assert data.params["model"] == record["components"]["model"]["name"]
    assert data.params["model_plugin"] == record["components"]["model"]["plugin"]
    assert data.metrics["test_accuracy"] == record["metrics"]["test_accuracy"]
    losses = [(m.step, m.value) for m in client.get_metric_history(run_id, "epoch_loss")]
    assert sorted(losses) == list(enumerate(record["metrics"]["epoch_loss"], 1))
    running_steps = sorted(m.step for m in client.get_metric_history(run_id, "running_loss"))
    assert running_steps[-1] == 2 * STEPS_PER_EPOCH and len(running_steps) > 2  # global steps, across epochs
    for name in record["metrics"]["per_class_accuracy"]:
        assert data.metrics[f"per_class_accuracy/{name}"] == record["metrics"]["per_class_accuracy"][name]
    assert data.metrics["timings/train_s"] == record["timings"]["train_s"]
    assert data.metrics["throughput/train_img_s"] == record["throughput"]["train_img_s"]
    tags = data.tags
    assert (tags["workload"], tags["device"], tags["precision"]) == (record["workload"]["key"], "cpu", "fp32")
    assert tags["machine"] == record["environment"]["cpu"]
    assert tags.get("git_commit") == record["environment"]["git_commit"]
    artifact = client.download_artifacts(run_id, "record.json", str(tmp_path))
    assert json.loads(Path(artifact).read_text()) == record


@needs_mlflow
def test_mlflow_repeats_nest_under_one_parent_run(tmp_path, capsys, monkeypatch, mlflow_server):
    import mlflow

    experiment = f"repeats-{uuid.uuid4().hex[:8]}"
    tracker = MlflowTracker(experiment)
    code, records, err = run(tmp_path, capsys, as_plugin(monkeypatch, tracker, "ml_nested"), extra=("--repeats", "2"))
    tracker.close()  # what the harness does at the end of the command: the parent run ends
    assert code == 0 and tracker.problem is None, err
    client = mlflow.MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("cifar_bench.parent") == "true"]
    children = sorted((r for r in runs if r is not parent), key=lambda r: r.info.run_name)
    assert [r.info.run_name for r in children] == [record["run_id"] for record in records]
    assert {r.data.tags.get("mlflow.parentRunId") for r in children} == {parent.info.run_id}
    assert parent.info.status == "FINISHED" and parent.data.tags["runs"] == "2"
    assert [r.data.params["seed"] for r in children] == [str(record["seed"]) for record in records]


@needs_mlflow
def test_mlflow_error_during_a_run_loses_nothing(tmp_path, capsys, monkeypatch, mlflow_server):
    import mlflow

    tracker = MlflowTracker(f"broken-{uuid.uuid4().hex[:8]}")
    client = mlflow.MlflowClient(mlflow_server)
    saboteur = types.ModuleType("ml_saboteur")  # deletes the MLflow run under the tracker, mid-epoch
    saboteur.train_progress = hookimpl(lambda run: client.delete_run(tracker.run_ids[run.run_id]))
    monkeypatch.setitem(sys.modules, "ml_saboteur", saboteur)
    code, (record,), err = run(tmp_path, capsys, as_plugin(monkeypatch, tracker, "ml_broken"), "ml_saboteur")
    assert code == 0 and record["status"] == "ok", err
    (warning,) = warnings_about(err, "mlflow")
    assert warning.startswith(f"cifar-bench: warning: mlflow: logging epoch 1 of run {record['run_id']} failed: ")
    assert "deleted" in warning
    assert tracker.problem in warning
