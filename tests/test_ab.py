"""Two installs taking turns step by step (``cifar-bench ab``): alternation, clocks, and every way it can end."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import pytest

from cifar_bench.execution import ab, ab_protocol
from cifar_bench.results.schema import PairedRatio

FAKE_SIDE = Path(__file__).with_name("ab_fake_side.py")

# A recipe whose training steps write the side's tag to a shared log (one line each, appended), and whose
# steps on a side given AB_SLEEP take that many seconds longer.
STEPLOG_PLUGIN = """
import os, time
from cifar_bench import Recipe, hookimpl
from cifar_bench.plugins.baseline import Net

TAG, LOG, SLEEP = os.environ["AB_TAG"], os.environ["AB_LOG"], float(os.environ.get("AB_SLEEP", "0"))
started = False


class LoggedNet(Net):
    def forward(self, x):
        if self.training and started:
            fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, TAG.encode() + b"\\n")
            os.close(fd)
            time.sleep(SLEEP)
        return super().forward(x)


@hookimpl
def register_models(register):
    register("logged_net", lambda hp: LoggedNet(), "test: Net that logs its training steps")


@hookimpl
def register_recipes(register):
    hp = {"batch_size": int(os.environ.get("AB_BATCH", "4")), "epochs": 1, "lr": 0.001, "momentum": 0.9}
    register(Recipe("steplog", "logged_net", "cross_entropy", "sgd", "tutorial", "synthetic", hyperparameters=hp))


@hookimpl
def run_start(run):
    global started
    started = True  # the warm-up's steps before this are not logged


@hookimpl
def run_end(run, record):
    global started
    started = False
"""

TINY = ("--dataset", "synthetic", "--limit-train", "40", "--limit-test", "10", "--quiet", "--threads", "1")


def real_side(tmp_path: Path, tag: str, sleep: float = 0.0, batch: int = 4) -> str:
    plugin = tmp_path / "steplog.py"
    plugin.write_text(STEPLOG_PLUGIN)
    env = f"AB_TAG={tag} AB_LOG={tmp_path / 'steps.log'} AB_SLEEP={sleep} AB_BATCH={batch}"
    return f"env {env} {shlex.quote(sys.executable)} -m cifar_bench -p {shlex.quote(str(plugin))}"


def fake_side(mode: str, workload: dict | None = None) -> str:
    extra = f" {shlex.quote(json.dumps(workload))}" if workload else ""
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE_SIDE))} {mode}{extra}"


def records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def test_two_installs_alternate_steps_each_pauses_its_clock_and_records_its_partner(run_cli, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    result = run_cli("ab", "--a", real_side(tmp_path, "a"), "--b", real_side(tmp_path, "b", sleep=0.02),
                     "--results-a", a, "--results-b", b,
                     "--", "run", "steplog", *TINY, "--repeats", "2")  # fmt: skip
    assert result.code == 0, result
    # 10 steps a side per run, one step each in turn; side a goes first in the first run, side b in the second.
    steps = (tmp_path / "steps.log").read_text().split()
    assert "".join(steps) == "ab" * 10 + "ba" * 10
    runs_a, runs_b = records(a), records(b)
    assert len(runs_a) == len(runs_b) == 2
    # Paired by partner, not by file name: two runs started within one second sort by their random suffix.
    b_by_id = {rb["run_id"]: rb for rb in runs_b}
    for ra in runs_a:
        rb = b_by_id.pop(ra["partner"]["run_id"])
        assert ra["status"] == rb["status"] == "ok"
        assert rb["partner"]["run_id"] == ra["run_id"]
        assert ra["partner"]["side"] == "b" and rb["partner"]["side"] == "a"
        # Paused clocks: side b's steps sleep 0.2 s in all, and none of that is side a's time.
        assert rb["timings"]["train_s"] >= 10 * 0.02
        assert ra["timings"]["train_s"] < rb["timings"]["train_s"] / 2
        # Each record's paired ratio is its own steps over its partner's same steps (the first is unpaired).
        assert ra["paired_ratio"]["steps"] == rb["paired_ratio"]["steps"] == 9
        assert rb["paired_ratio"]["step_median"] > 2 and ra["paired_ratio"]["step_median"] < 0.5
        assert ra["paired_ratio"]["train_s"] == pytest.approx(1 / rb["paired_ratio"]["train_s"])
        # Like work: same recipe, seed and data, so the same losses on both sides.
        assert ra["metrics"]["epoch_loss"] == rb["metrics"]["epoch_loss"]
    assert sorted(r["seed"] for r in runs_a) == [0, 1]


@pytest.fixture
def pids(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "pids"
    folder.mkdir()
    monkeypatch.setenv("AB_FAKE_PIDS", str(folder))
    return folder


def assert_reaped(pids: Path) -> None:
    # A side killed before it wrote its pid (its partner was refused first) leaves only a .tmp file or none.
    written = [path for path in pids.iterdir() if not path.suffix]
    assert written, "no side wrote its pid"
    for path in written:
        with pytest.raises(ProcessLookupError):  # neither running nor a zombie: waited for
            os.kill(int(path.read_text()), 0)


def run_fakes(run_cli, tmp_path, a: str, b: str, *extra: str):
    started = time.monotonic()
    result = run_cli("ab", "--a", a, "--b", b, "--results-a", tmp_path / "ra", "--results-b", tmp_path / "rb",
                     *extra, "--", "run", "baseline")  # fmt: skip
    assert time.monotonic() - started < 30  # ended, not hung (the generous bound is for a loaded machine)
    assert len(result.err.strip().splitlines()) == 1, result  # one line
    assert not list(tmp_path.glob("r?/*.json"))  # nothing written
    return result


def test_a_partner_that_dies_ends_the_command_and_both_are_reaped(run_cli, tmp_path, pids):
    result = run_fakes(run_cli, tmp_path, fake_side("good"), fake_side("die"))
    assert result.code == 1, result
    assert "side b" in result.err and "exit code 3" in result.err
    assert_reaped(pids)


def test_a_partner_that_never_answers_times_out(run_cli, tmp_path, pids):
    result = run_fakes(run_cli, tmp_path, fake_side("good"), fake_side("hang"), "--timeout", "1")
    assert result.code == 1, result
    assert "side b" in result.err and "sent nothing for 1 s" in result.err and "side a" not in result.err
    assert_reaped(pids)


def test_a_side_speaking_another_protocol_version_is_refused(run_cli, tmp_path, pids):
    result = run_fakes(run_cli, tmp_path, fake_side("good"), fake_side("version"))
    assert result.code == 2, result
    assert (
        f"speaks lockstep protocol 99, this cifar-bench ({ab.__version__}) speaks {ab_protocol.PROTOCOL}" in result.err
    )
    assert_reaped(pids)


def test_a_cifar_bench_that_predates_the_protocol_is_named(run_cli, tmp_path, pids):
    result = run_fakes(run_cli, tmp_path, fake_side("old"), fake_side("good"))
    assert result.code == 2, result
    assert "side a" in result.err and "before the lockstep handshake" in result.err and "invalid choice" in result.err
    assert_reaped(pids)


def test_sides_whose_workloads_differ_are_stopped_before_training(run_cli, tmp_path, pids):
    result = run_fakes(run_cli, tmp_path, fake_side("good", {"epochs": 1, "batch_size": 4}),
                       fake_side("good", {"epochs": 2, "batch_size": 4}))  # fmt: skip
    assert result.code == 2, result
    assert "workloads differ" in result.err and "epochs 1 vs 2" in result.err and "batch_size" not in result.err
    assert_reaped(pids)


def test_real_sides_with_different_workloads_are_refused(run_cli, tmp_path):
    result = run_cli("ab", "--a", real_side(tmp_path, "a"), "--b", real_side(tmp_path, "b", batch=8),
                     "--results-a", tmp_path / "ra", "--results-b", tmp_path / "rb",
                     "--", "run", "steplog", *TINY)  # fmt: skip
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result
    assert "steps_per_epoch 10 vs 5" in result.err and "batch_size 4 vs 8" in result.err
    assert not (tmp_path / "steps.log").exists()  # stopped before either trained
    assert not list(tmp_path.glob("r?/*.json"))


def test_a_bad_run_flag_is_the_sides_own_one_line_error(run_cli, tmp_path, pids):
    result = run_cli("ab", "--a", fake_side("good"), "--b", real_side(tmp_path, "b"),
                     "--", "run", "steplog", *TINY, "--loader", "nope")  # fmt: skip
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result
    assert "side b" in result.err and "--loader" in result.err


def test_bad_ab_usage_is_one_line_and_exit_2(run_cli, tmp_path):
    for args in (("--a", "x", "--b", "y"), ("--a", "x", "--", "run", "baseline"),
                 ("--a", "x", "--b", "y", "--", "run", "baseline", "--results-dir", "r")):  # fmt: skip
        result = run_cli("ab", *args)
        assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result
    assert run_cli("ab", "--protocol").out.strip() == str(ab_protocol.PROTOCOL)


def test_paired_ratio_pairs_step_k_with_step_k_and_skips_unpaired_steps():
    ratio = ab_protocol.paired_ratio([None, 2.0, 4.0, 3.0], [None, 1.0, 2.0])
    assert ratio == PairedRatio(train_s=2.0, step_median=2.0, steps=2)
    assert ab_protocol.paired_ratio([None], [None]) is None
