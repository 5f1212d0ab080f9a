"""CPU tuning: measured in the warm-up, applied to training only, recorded, never changing results."""

import torch

from cifar_bench import cpu_tuning, hookimpl, manager
from cifar_bench.registry import collect
from cifar_bench.runner import RunConfig, Session

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
    record = session_with(spy).run(RunConfig("baseline", **SMALL))
    assert record.status == "ok"
    cpu = record.cpu
    assert len(cpu["tuned_ms_per_step"]) == len(cpu_tuning.candidates())
    assert all(ms > 0 for ms in cpu["tuned_ms_per_step"].values())
    chosen = min(cpu["tuned_ms_per_step"], key=cpu["tuned_ms_per_step"].get)
    assert chosen == cpu_tuning.CpuSettings(cpu["threads"], cpu["onednn"]).label
    assert spy.seen == {(cpu["threads"], cpu["onednn"])}
    assert cpu_tuning.current() == before


def test_tuning_changes_speed_never_results():
    tuned = session_with(Spy()).run(RunConfig("baseline", seed=3, **SMALL))
    plain = session_with(Spy()).run(RunConfig("baseline", seed=3, cpu_tune=False, **SMALL))
    assert plain.cpu["tuned_ms_per_step"] is None
    # Other kernels round differently, so losses agree closely rather than bit for bit.
    for a, b in zip(tuned.metrics.epoch_loss, plain.metrics.epoch_loss, strict=True):
        assert abs(a - b) < 1e-3


def test_fixed_threads_leave_only_the_kernels_to_tune():
    record = session_with(Spy()).run(RunConfig("baseline", threads=1, **SMALL))
    assert record.cpu["threads"] == 1
    assert all(label.startswith("1 thread,") for label in record.cpu["tuned_ms_per_step"])


def test_the_fastest_candidate_wins():
    fast, slow = cpu_tuning.CpuSettings(1, False), cpu_tuning.CpuSettings(1, True)

    def step():
        if torch.backends.mkldnn.enabled:  # the oneDNN candidate is made slower on purpose
            sum(range(20_000))

    best, timings = cpu_tuning.tune(step, [slow, fast])
    assert best == fast and timings[fast.label] < timings[slow.label]
