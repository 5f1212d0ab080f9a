"""Runs taking turns step by step (``run --reference R --interleave step``): alternation, isolation, endings."""

from __future__ import annotations

import itertools
import json
import os
import threading

import pytest
import torch
import torch.nn as nn

from cifar_bench import Recipe, hookimpl
from cifar_bench.execution import lockstep
from cifar_bench.hooks import manager
from cifar_bench.hooks.registry import collect
from cifar_bench.plugins.baseline import Net
from cifar_bench.results.schema import RunRecord
from cifar_bench.training.config import RunConfig
from cifar_bench.training.session import Session
from cifar_bench.training.state import RunResult
from cifar_bench.training.timing import PhaseTimer

# -- the baton ------------------------------------------------------------------------------


def players(log: list, steps: list[int], fail_at: dict[int, int] | None = None):
    """A fake ``run``: player i logs each of its steps[i] steps and takes its turn after each."""

    def run(i, turn):
        for k in range(steps[i]):
            if (fail_at or {}).get(i) == k:
                raise ValueError(f"player {i} broke")
            log.append(i)
            turn()
        return FakeResult("ok")

    return run


class FakeRecord(RunRecord):
    def __init__(self, status: str) -> None:  # only what run_lockstep reads
        self.status = status


def FakeResult(status: str) -> RunResult:
    return RunResult(FakeRecord(status), None)


def test_players_alternate_one_step_each_and_the_longer_one_finishes_alone():
    log = []
    records = lockstep.run_lockstep(players(log, [3, 5]), 2)
    assert log == [0, 1, 0, 1, 0, 1, 1, 1]
    assert [r.record.status for r in records] == ["ok", "ok"]


def test_a_run_that_raises_stops_the_other_and_the_error_reaches_the_caller():
    log = []
    with pytest.raises(ValueError, match="player 1 broke"):
        lockstep.run_lockstep(players(log, [10, 10], fail_at={1: 2}), 2)
    assert log == [0, 1, 0, 1, 0]  # player 0 stopped at its next turn instead of training alone


def test_an_interrupted_run_interrupts_the_other():
    log, seen = [], []

    def run(i, turn):
        for k in range(10):
            log.append(i)
            try:
                if i == 0 and k == 2:
                    raise KeyboardInterrupt
                turn()
            except KeyboardInterrupt:
                seen.append(i)
                return FakeResult("interrupted")  # what Session.run records on Ctrl-C
        return FakeResult("ok")

    records = lockstep.run_lockstep(run, 2)
    assert [r.record.status for r in records] == ["interrupted", "interrupted"] and seen == [0, 1]
    assert log == [0, 1, 0, 1, 0]


def test_only_one_player_works_at_a_time():
    busy, overlaps = threading.Lock(), []

    def run(i, turn):
        for _ in range(50):
            if not busy.acquire(blocking=False):
                overlaps.append(i)
            else:
                busy.release()
            with busy:
                pass
            turn()
        return FakeResult("ok")

    lockstep.run_lockstep(run, 2)
    assert overlaps == []


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_players_share_one_core_while_they_play_and_the_caller_gets_its_cores_back():
    before, seen = os.sched_getaffinity(0), {}
    core = max(before)

    def run(i, turn):
        seen[i] = os.sched_getaffinity(0)
        turn()
        return FakeResult("ok")

    lockstep.run_lockstep(run, 2, core=core)
    assert seen == {0: {core}, 1: {core}}
    assert os.sched_getaffinity(0) == before


def test_a_shared_core_only_with_one_thread_and_no_loader_workers(monkeypatch):
    if not hasattr(os, "sched_setaffinity"):
        assert lockstep.shared_core("tensor") is None
        return
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert lockstep.shared_core("tensor") in os.sched_getaffinity(0)
    assert lockstep.shared_core("dataloader") is None  # its worker processes would inherit the pin
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert lockstep.shared_core("tensor") is None


# -- the clock ------------------------------------------------------------------------------


def test_time_paused_is_billed_to_no_phase(monkeypatch):
    clock = iter([0.0, 1.0, 4.0, 5.0])  # phase starts, pause starts, pause ends, phase ends
    monkeypatch.setattr("cifar_bench.training.timing.time.perf_counter", lambda: next(clock))
    events = []
    timer = PhaseTimer(lambda: events.append("sync"))
    with timer.phase("train"), timer.paused():
        pass
    assert timer.seconds["train"] == pytest.approx(2.0) and timer.away_s == pytest.approx(3.0)
    assert events == ["sync"] * 4  # the device is synced at both edges of a pause too


# -- real runs ------------------------------------------------------------------------------


class DropoutNet(Net):
    """The tutorial Net with dropout: training draws from torch's global random stream."""

    def __init__(self, log: list) -> None:
        super().__init__()
        self.drop, self.log = nn.Dropout(0.5), log

    def forward(self, x):
        if self.training:
            self.log.append(threading.current_thread().name)
        return super().forward(self.drop(x))


class DropoutPlugin:
    def __init__(self) -> None:
        self.log: list[str] = []

    @hookimpl
    def register_models(self, register):
        register("dropout_net", lambda hp: DropoutNet(self.log), "test: Net with dropout")

    @hookimpl
    def register_recipes(self, register):
        hp = {"batch_size": 20, "epochs": 2, "lr": 0.01, "momentum": 0.9}
        register(Recipe("dropout", "dropout_net", "cross_entropy", "sgd", "tutorial", "synthetic", hyperparameters=hp))


@pytest.fixture
def session():
    plugins = manager.build(autoload=False)
    probe = DropoutPlugin()
    manager.register_inline(plugins, probe, "dropout")
    return Session(plugins, collect(plugins)), probe.log


def config(seed: int) -> RunConfig:
    return RunConfig("dropout", seed=seed, limit_train=200, limit_test=50, cache_dir=None, cpu_tune=False)


def test_runs_in_lockstep_alternate_steps_and_train_exactly_as_they_would_alone(session):
    session, log = session
    alone = [session.run(config(seed)).record for seed in (1, 2)]
    log.clear()
    together = [r.record for r in lockstep.run_lockstep(lambda i, turn: session.run(config(i + 1), turn=turn), 2)]
    # Run 0 warms up and takes its first step, run 1 warms up (one forward each); from then on, training
    # forwards alternate between the two threads.
    training = log[log.index("lockstep-1") + 1 :]
    assert len(training) == 2 * 2 * 10 - 1  # 2 runs x 2 epochs x 10 steps, less run 1's first
    assert all(a != b for a, b in itertools.pairwise(training))
    for solo, paired in zip(alone, together, strict=True):
        assert paired.status == "ok"
        assert paired.metrics.epoch_loss == solo.metrics.epoch_loss  # the global random stream was kept apart
        assert paired.metrics.test_accuracy == solo.metrics.test_accuracy


def test_a_run_that_fails_mid_training_leaves_and_the_other_finishes(session):
    session, _ = session
    lr_nan = RunConfig("dropout", seed=1, limit_train=200, limit_test=50, cache_dir=None, cpu_tune=False,
                       hyperparameters={"lr": 1e30})  # fmt: skip
    diverged, ok = lockstep.run_lockstep(lambda i, turn: session.run((lr_nan, config(2))[i], turn=turn), 2)
    assert diverged.record.status == "diverged" and ok.record.status == "ok"


@pytest.fixture
def keep_threads():
    """``run --threads`` sets the process's torch threads; put them back for the tests after."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_cli_interleaves_step_by_step_by_default(run_cli, tmp_path, smoke, keep_threads):
    result = run_cli("run", "baseline", *smoke, "--reference", "baseline", "--threads", "1", "--results-dir", tmp_path)
    assert result.code == 0, result
    runs = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    (candidate,) = [r for r in runs if r["role"] == "candidate"]
    (reference,) = [r for r in runs if r["role"] == "reference"]
    assert candidate["reference"]["interleave"] == "step"
    assert candidate["reference"]["run_id"] == reference["run_id"]
    # Own time only: each run's train time is far below the two together, and the ratio is of those.
    assert candidate["timings_ratio"]["train_s"] == pytest.approx(
        candidate["timings"]["train_s"] / reference["timings"]["train_s"]
    )
    assert candidate["metrics"]["epoch_loss"] == reference["metrics"]["epoch_loss"]  # same recipe, same seed
    # CPU settings belong to the process: runs taking turns share one set, untuned.
    assert candidate["cpu"]["tuned_ms_per_step"] is None and reference["cpu"]["tuned_ms_per_step"] is None


def test_interleave_without_a_reference_or_step_under_nproc_is_bad_input(run_cli, tmp_path, smoke):
    result = run_cli("run", "baseline", *smoke, "--interleave", "step", "--results-dir", tmp_path)
    assert result.code == 2 and "--reference" in result.err and len(result.err.strip().splitlines()) == 1
    result = run_cli("run", "baseline", *smoke, "--reference", "baseline", "--interleave", "step", "--nproc", "2")
    assert result.code == 2 and "--interleave run" in result.err
    assert not list(tmp_path.glob("*.json"))


def test_ctrl_c_in_one_of_two_runs_taking_turns_records_both_as_interrupted(run_cli, tmp_path, smoke):
    plugin = tmp_path / "interrupt.py"
    plugin.write_text(
        "from cifar_bench import hookimpl\n\n\n@hookimpl\ndef epoch_end(run, epoch):\n    raise KeyboardInterrupt\n"
    )
    out = tmp_path / "r"
    result = run_cli("run", "baseline", *smoke, "-p", plugin, "--reference", "baseline", "--results-dir", out)
    assert result.code == 130, result
    runs = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert sorted(r["role"] for r in runs) == ["candidate", "reference"]
    assert {r["status"] for r in runs} == {"interrupted"}
