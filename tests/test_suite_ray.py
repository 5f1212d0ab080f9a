"""``cifar-bench suite FILE --executor ray``, on a real local Ray instance (2 CPUs) the tests start.

Skipped when Ray is not installed (``pip install -e ".[ray]"``), except the
checks of what happens without it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_suite import SMOKE  # the same small synthetic defaults as the local executor's tests

from cifar_bench.execution import suite as suite_module

# Three runs: two seeds, and another batch size read through the DataLoader (the data a worker was shipped).
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
variants = { loader = "dataloader" }
"""
)

# What may differ between two executions of one run: when, where, how fast.
VOLATILE = ("run_id", "started_at", "timings", "throughput", "environment", "memory", "cpu")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance with 2 CPUs for this module's tests; its address, for drivers in other processes."""
    ray = pytest.importorskip("ray", reason='Ray is not installed: pip install -e ".[ray]"')
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def write(tmp_path, text: str, name: str = "suite.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def records(folder) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def by_key(folder) -> dict[str, dict]:
    found = records(folder)
    assert len({r["suite_key"] for r in found}) == len(found)
    return {r["suite_key"]: r for r in found}


def wait_for_records(folder, n: int, process: subprocess.Popen, timeout: float = 240) -> None:
    # The bound only ends a hang: a new driver connects to Ray and its worker imports torch, which took over
    # 90 s with the machine's two cores also busy with other work.
    deadline = time.monotonic() + timeout
    while len(list(folder.glob("*.json"))) < n:
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no record came back in time"
        time.sleep(0.2)


def driver(suite, results, address, *plugins) -> subprocess.Popen:
    """``cifar-bench suite --executor ray`` as its own process, connected to the tests' cluster."""
    command = [sys.executable, "-m", "cifar_bench", "suite", str(suite), "--executor", "ray", "--address", address,
               "--results-dir", str(results), "--quiet", *(a for p in plugins for a in ("-p", str(p)))]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def slow_plugin(tmp_path):
    """Runs other than each group's first seed take a minute: long enough to stop a driver in the middle."""
    return write(
        tmp_path,
        "import time\nfrom cifar_bench import hookimpl\n\n"
        "@hookimpl\n"
        "def run_start(run):\n"
        "    if run.repeat > 0:\n"
        "        time.sleep(60)\n",
        "slow.py",
    )


def test_ray_gives_the_records_the_local_executor_gives(run_cli, cluster, tmp_path):
    suite = write(tmp_path, THREE_RUNS)
    local = run_cli("suite", suite, "--results-dir", tmp_path / "local", "--quiet")
    assert local.code == 0, local
    remote = run_cli("suite", suite, "--results-dir", tmp_path / "ray", "--quiet", "--executor", "ray")
    assert remote.code == 0, remote
    # The data was decoded once on the driver and put in the object store once, for all three runs.
    assert remote.out.count("data: synthetic (2,000 train / 500 test images") == 1
    assert "3 of 3 runs ok" in remote.out

    expected, got = by_key(tmp_path / "local"), by_key(tmp_path / "ray")
    assert set(got) == set(expected) and len(got) == 3
    for key, want in expected.items():
        have = got[key]
        # Each run picks its kernels by timing them (cpu_tuning.py), and other kernels round differently.
        if have["cpu"]["onednn"] != want["cpu"]["onednn"]:
            assert have["metrics"]["epoch_loss"] == pytest.approx(want["metrics"]["epoch_loss"], rel=1e-5)
            have["metrics"]["epoch_loss"] = want["metrics"]["epoch_loss"]
        assert {k: v for k, v in have.items() if k not in VOLATILE} == {
            k: v for k, v in want.items() if k not in VOLATILE
        }
        assert have["status"] == "ok" and have["dataset"]["synthetic"] and have["cpu"]["threads"] == 1

    again = run_cli("suite", suite, "--results-dir", tmp_path / "ray", "--quiet", "--executor", "ray")
    assert again.code == 0 and "3 runs, 3 done before, 0 to run" in again.out
    assert len(records(tmp_path / "ray")) == 3


def test_a_run_no_node_can_hold_is_skipped_with_the_reason(run_cli, cluster, tmp_path):
    suite = write(
        tmp_path,
        SMOKE + '[[runs]]\nrecipes = "baseline"\ndevices = "cuda"\n\n[[runs]]\nrecipes = "baseline"\nthreads = 3\n',
    )
    result = run_cli("suite", suite, "--results-dir", tmp_path / "r", "--executor", "ray")
    assert result.code == 0, result  # skipped is not failed, as for an absent device in the local executor
    found = records(tmp_path / "r")
    assert sorted(r["status"] for r in found) == ["skipped", "skipped"]
    errors = sorted(r["error"] for r in found)
    assert errors == [
        "no node of the Ray cluster has 1 CPU and 1 GPU (its nodes: 2 CPUs, 0 GPUs)",
        "no node of the Ray cluster has 3 CPUs (its nodes: 2 CPUs, 0 GPUs)",
    ]
    assert all(r["suite_key"] for r in found)


def test_a_suite_resumes_after_its_driver_was_killed(run_cli, cluster, tmp_path):
    # Two threads a run: one run at a time on the 2-CPU cluster, so the new driver starts one worker, not two.
    suite = write(tmp_path, SMOKE + '[[runs]]\nrecipes = "baseline"\nseeds = [0, 1, 2]\nthreads = 2\n')
    process = driver(suite, tmp_path / "r", cluster, slow_plugin(tmp_path))
    wait_for_records(tmp_path / "r", 1, process)
    process.kill()  # SIGKILL: no handler, no clean-up; Ray ends the dead driver's tasks itself
    process.communicate(timeout=30)
    (first,) = records(tmp_path / "r")

    resumed = run_cli("suite", suite, "--results-dir", tmp_path / "r", "--quiet", "--executor", "ray")
    assert resumed.code == 0, resumed
    assert "3 runs, 1 done before, 2 to run" in resumed.out
    found = by_key(tmp_path / "r")
    assert len(found) == 3 and {r["status"] for r in found.values()} == {"ok"}
    assert found[first["suite_key"]]["run_id"] == first["run_id"]


def test_a_worker_killed_mid_run_is_retried_then_recorded_failed(run_cli, cluster, tmp_path):
    # The worker is killed (SIGKILL) as the run starts training, every time; each try leaves a mark.
    marks = tmp_path / "marks"
    marks.mkdir()
    killer = write(
        tmp_path,
        "import os, signal\nfrom pathlib import Path\nfrom cifar_bench import hookimpl\n\n"
        "@hookimpl\n"
        "def run_start(run):\n"
        f"    (Path({str(marks)!r}) / str(os.getpid())).touch()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n",
        "killer.py",
    )
    suite = write(tmp_path, SMOKE + '[[runs]]\nrecipes = "baseline"\n')
    result = run_cli("suite", suite, "-p", killer, "--results-dir", tmp_path / "r", "--quiet", "--executor", "ray")
    assert result.code == 1, result
    assert len(list(marks.iterdir())) == 2  # --max-retries 1: tried twice, each time in a new worker process
    (failed,) = records(tmp_path / "r")
    assert failed["status"] == "failed" and failed["suite_key"]
    assert failed["error"] == "its worker died (WorkerCrashedError) in each of 2 tries (--max-retries 1)"
    assert "failed: its worker died" in result.out  # in the suite's table


def test_ctrl_c_on_the_driver_cancels_the_rest_and_keeps_what_finished(run_cli, cluster, tmp_path):
    suite = write(tmp_path, SMOKE + '[[runs]]\nrecipes = "baseline"\nseeds = [0, 1, 2]\n')

    def press_ctrl_c():  # as a terminal does: SIGINT to the driver's process, once a run came back
        deadline = time.monotonic() + 240  # the first run needs a Ray worker that imports torch: slow on a busy machine
        while not list((tmp_path / "r").glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        if list((tmp_path / "r").glob("*.json")):  # never a stray Ctrl-C into pytest itself
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGINT)

    # Ctrl-C as a terminal delivers it, whatever this process inherited: a job started in the background by a
    # non-interactive shell (as a CI script may be) starts with SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    pressing = threading.Thread(target=press_ctrl_c, daemon=True)
    pressing.start()
    try:
        result = run_cli("suite", suite, "-p", slow_plugin(tmp_path), "--results-dir", tmp_path / "r", "--quiet",
                         "--executor", "ray")  # fmt: skip
    finally:
        pressing.join()
        signal.signal(signal.SIGINT, previous)
    assert result.code == 130, result
    assert "interrupted: cancelled 2 runs still running or pending" in result.out
    (done,) = records(tmp_path / "r")
    assert done["status"] == "ok" and done["seed"] == 0
    assert re.search(r"baseline\s+cpu\s+tensor fp32\s+1\s+ok", result.out)  # the suite's table, as at any end


# -- without a cluster -------------------------------------------------------------------------


def test_without_ray_the_executor_is_a_one_line_error_naming_the_extra(run_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as when it is not installed
    result = run_cli("suite", write(tmp_path, SMOKE + '[[runs]]\nrecipes = "baseline"\n'), "--executor", "ray",
                     "--results-dir", tmp_path / "r")  # fmt: skip
    assert result.code == 2, result
    assert len(result.err.strip().splitlines()) == 1 and 'pip install -e ".[ray]"' in result.err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--address", "127.0.0.1:1"), "--address and --max-retries are for --executor ray"),
        (("--max-retries", "2"), "--address and --max-retries are for --executor ray"),
        (("--executor", "ray", "--max-retries", "-1"), "expected a whole number of at least 0"),
        (("--executor", "dask"), "invalid choice: 'dask'"),
    ],
)
def test_bad_executor_flags_are_one_line_errors(run_cli, tmp_path, args, message):
    result = run_cli("suite", write(tmp_path, SMOKE + '[[runs]]\nrecipes = "baseline"\n'), *args)
    assert result.code == 2, result
    assert len(result.err.strip().splitlines()) == 1 and message in result.err, result.err


def test_a_run_on_a_numbered_gpu_is_refused_before_anything_runs(run_cli, tmp_path):
    pytest.importorskip("ray", reason='Ray is not installed: pip install -e ".[ray]"')
    suite = write(tmp_path, SMOKE + '[[runs]]\nrecipes = "baseline"\ndevices = "cuda:1"\n')
    result = run_cli("suite", suite, "--executor", "ray", "--results-dir", tmp_path / "r")
    assert result.code == 2, result
    assert "on a Ray cluster a run takes the GPU Ray gives it; use devices = 'cuda'" in result.err
    assert not (tmp_path / "r").exists()


def test_what_a_run_asks_the_cluster_for():
    from cifar_bench.execution.ray_cluster import Request, request, unplaceable_reason

    (run,) = suite_module._expand({"recipes": "baseline", "threads": 2, "nproc": 2}, "here", Path("."))
    assert request(run.config()) == Request(cpus=4, gpus=0)
    (gpu,) = suite_module._expand({"recipes": "baseline", "devices": "cuda", "nproc": 2}, "here", Path("."))
    assert request(gpu.config()) == Request(cpus=2, gpus=2)
    nodes = [{"CPU": 8.0}, {"CPU": 4.0, "GPU": 1.0}]
    assert unplaceable_reason(Request(4, 1), nodes) is None
    assert unplaceable_reason(Request(4, 2), nodes) == (
        "no node of the Ray cluster has 4 CPUs and 2 GPUs (its nodes: 8 CPUs, 0 GPUs; 4 CPUs, 1 GPU)"
    )


def test_a_session_given_decoded_data_trains_on_it_without_reading_its_own(tmp_path):
    """What a worker does with the data its driver shipped: here CIFAR-10 is neither downloaded nor read."""
    from cifar_bench import DataSource
    from cifar_bench.hooks import manager
    from cifar_bench.hooks.registry import collect
    from cifar_bench.plugins.datasets import make_synthetic
    from cifar_bench.training.config import RunConfig
    from cifar_bench.training.data import decode
    from cifar_bench.training.session import Session

    plugins = manager.build([], autoload=False)
    session = Session(plugins, collect(plugins))
    shipped = make_synthetic(200, 50)
    source = DataSource(root=str(tmp_path / "no-cifar-here"), download=False)
    session.provide_data("cifar10", source, shipped, decode(shipped.train), decode(shipped.test))
    config = RunConfig("baseline", source=source, limit_train=40, limit_test=20, hyperparameters={"epochs": 1},
                       cache_dir=None, threads=1)  # fmt: skip
    record = session.run(config).record
    assert record.status == "ok", record.error
    assert record.dataset.fingerprint == shipped.fingerprint and record.dataset.train_size == 40
    assert not (tmp_path / "no-cifar-here").exists()
