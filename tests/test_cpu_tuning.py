"""CPU tuning: measured in the warm-up, applied to training only, recorded, never changing results."""

import torch

from cifar_bench import hookimpl
from cifar_bench.hooks import manager
from cifar_bench.hooks.registry import collect
from cifar_bench.training import tuning as cpu_tuning
from cifar_bench.training.config import RunConfig
from cifar_bench.training.session import Session

SMALL = dict(dataset="synthetic", limit_train=200, limit_test=50, cache_dir=None)


class Spy:
    """Notes the CPU settings in force while training steps run."""

    def __init__(self):
        self.seen = set()

    @hookimpl
    def train_progress(self, run, progress):
        self.seen.add((torch.get_num_threads(), bool(torch.backends.mkldnn.enabled)))


def session_with(spy):
    plugins = manager.build()
    manager.register_inline(plugins, spy, "spy")
    return Session(plugins, collect(plugins))


def test_training_uses_the_settings_tuning_chose_and_the_process_gets_its_own_back():
    spy = Spy()
    before = cpu_tuning.current()
    record = session_with(spy).run(RunConfig("baseline", **SMALL)).record
    assert record.status == "ok"
    cpu = record.cpu
    assert len(cpu.tuned_ms_per_step) == len(cpu_tuning.candidates())
    assert all(ms > 0 for ms in cpu.tuned_ms_per_step.values())
    chosen = min(cpu.tuned_ms_per_step, key=cpu.tuned_ms_per_step.get)
    assert chosen == cpu_tuning.CpuSettings(cpu.threads, cpu.onednn).label
    assert spy.seen == {(cpu.threads, cpu.onednn)}
    assert cpu_tuning.current() == before


def test_tuning_changes_speed_never_results():
    tuned = session_with(Spy()).run(RunConfig("baseline", seed=3, **SMALL)).record
    plain = session_with(Spy()).run(RunConfig("baseline", seed=3, cpu_tune=False, **SMALL)).record
    assert plain.cpu.tuned_ms_per_step is None
    # Other kernels round differently, so losses agree closely rather than bit for bit.
    for a, b in zip(tuned.metrics.epoch_loss, plain.metrics.epoch_loss, strict=True):
        assert abs(a - b) < 1e-3


def test_fixed_threads_leave_only_the_kernels_to_tune():
    record = session_with(Spy()).run(RunConfig("baseline", threads=1, **SMALL)).record
    assert record.cpu.threads == 1
    assert all(label.startswith("1 thread,") for label in record.cpu.tuned_ms_per_step)


def test_the_fastest_candidate_wins():
    fast, slow = cpu_tuning.CpuSettings(1, False), cpu_tuning.CpuSettings(1, True)

    def step():
        if torch.backends.mkldnn.enabled:  # the oneDNN candidate is made slower on purpose
            sum(range(20_000))

    best, timings = cpu_tuning.tune(step, [slow, fast])
    assert best == fast and timings[fast.label] < timings[slow.label]


def test_a_decision_measured_beside_other_work_says_so_whenever_it_is_used(tmp_path, monkeypatch):
    """A busy machine can crown the wrong candidate, and the decision is kept: every run that uses it is told."""
    fast, slow = cpu_tuning.CpuSettings(1, False), cpu_tuning.CpuSettings(1, True)
    # /proc/stat read before and after tuning: 10 s of CPU in all, 6 s busy, of which 1 s this process's own.
    readings = iter([cpu_tuning.CpuReading(100.0, 1000.0, 5.0), cpu_tuning.CpuReading(106.0, 1010.0, 6.0)])
    monkeypatch.setattr(cpu_tuning, "machine_cpu_s", lambda: next(readings))
    measured = cpu_tuning.decide(lambda: None, [slow, fast], "k", tmp_path)
    assert measured.others_share == 0.5 and measured.busy
    assert "other work took 50% of the CPU: --retune on a quiet machine" in measured.describe()
    assert measured.to_record().others_cpu_share == 0.5 and measured.to_record().busy is True

    kept = cpu_tuning.decide(lambda: None, [slow, fast], "k", tmp_path)  # a later run, on a quiet machine
    assert kept.how == "kept" and kept.busy and "kept from" in kept.describe() and "quiet machine" in kept.describe()


def test_a_quiet_measurement_is_not_flagged(tmp_path, monkeypatch):
    only = cpu_tuning.CpuSettings(1, False)
    # 4.5 s busy, 4 s of it this process
    readings = iter([cpu_tuning.CpuReading(100.0, 1000.0, 5.0), cpu_tuning.CpuReading(104.5, 1010.0, 9.0)])
    monkeypatch.setattr(cpu_tuning, "machine_cpu_s", lambda: next(readings))
    measured = cpu_tuning.decide(lambda: None, [only], "k", tmp_path)
    assert measured.others_share == 0.05 and not measured.busy
    assert measured.describe() == "1 thread, native (measured now)"
    assert cpu_tuning.decide(lambda: None, [only], "k", tmp_path).describe().endswith("; --retune measures again)")
