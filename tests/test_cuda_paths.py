"""The CUDA-only code paths, exercised on the CPU with stand-ins for torch.cuda."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

from cifar_bench.errors import UsageError
from cifar_bench.hooks import manager
from cifar_bench.hooks.registry import collect
from cifar_bench.results.schema import CudaInfo, EnergyInfo
from cifar_bench.results.variant import Variant
from cifar_bench.training import cuda_graphs, meters
from cifar_bench.training import session as session_module
from cifar_bench.training.config import RunConfig
from cifar_bench.training.loop import train_epoch
from cifar_bench.training.session import Session
from cifar_bench.training.step import TrainStep
from cifar_bench.training.timing import PhaseTimer
from cifar_bench.training.variants import unsupported_reason
from cifar_bench.training.world import World

CUDA = torch.device("cuda")


def session() -> Session:
    plugins = manager.build()
    return Session(plugins, collect(plugins))


@pytest.fixture
def cudnn_flags():
    saved = torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled()
    yield
    torch.backends.cudnn.benchmark = saved[0]
    torch.use_deterministic_algorithms(saved[1])


@pytest.mark.parametrize(("deterministic", "expected"), [(False, True), (True, False)])
def test_cudnn_autotunes_on_cuda_unless_deterministic(cudnn_flags, deterministic, expected):
    torch.backends.cudnn.benchmark = not expected
    torch.use_deterministic_algorithms(deterministic)
    assert cuda_graphs.cudnn_autotune(CUDA) is expected
    assert torch.backends.cudnn.benchmark is expected


def test_cudnn_is_left_alone_off_cuda(cudnn_flags):
    torch.backends.cudnn.benchmark = False
    assert cuda_graphs.cudnn_autotune(torch.device("cpu")) is None
    assert torch.backends.cudnn.benchmark is False


@pytest.mark.parametrize(
    ("variant", "device", "reason"),
    [
        (Variant(cuda_graph=True), "cpu", "CUDA graphs need a CUDA device"),
        (Variant(cuda_graph=True, compile=True), "cuda", "choose --cuda-graph or --compile"),
        (Variant(cuda_graph=True, precision="fp16"), "cuda", "use bf16"),
    ],
)
def test_cuda_graph_combinations_that_cannot_run_are_skipped_with_the_reason(variant, device, reason, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("cifar_bench.training.variants._autocast_problem", lambda device, dtype: None)
    assert reason in unsupported_reason(variant, torch.device(device))


def test_cuda_graph_on_cpu_is_a_skipped_record(run_cli, tmp_path):
    result = run_cli("run", "baseline", "--dataset", "synthetic", "--limit-train", "40", "--limit-test", "20",
                     "--cuda-graph", "--quiet", "--results-dir", tmp_path)  # fmt: skip
    assert result.code == 0, result
    (path,) = tmp_path.glob("*.json")
    text = path.read_text()
    assert '"status": "skipped"' in text and "CUDA graphs need a CUDA device" in text


class FakeGraphs:
    """Stands in for torch.cuda.make_graphed_callables: notes each capture and each replay."""

    def __init__(self, phase: list[str]) -> None:
        self.phase, self.captured, self.replays = phase, [], 0

    def __call__(self, module, sample_args):
        assert module.training and all(not a.requires_grad for a in sample_args)
        self.captured.append((tuple(sample_args[0].shape), self.phase[-1] if self.phase else None))

        def replay(x, y):
            self.replays += 1
            return module(x, y)

        return replay


def graphed_run(monkeypatch, cuda_graph: bool, recipe: str = "baseline", **hp):
    phase: list[str] = []
    real_phase = PhaseTimer.phase

    def tracking_phase(self, name):
        phase.append(name)
        return real_phase(self, name)

    fake = FakeGraphs(phase)
    monkeypatch.setattr(PhaseTimer, "phase", tracking_phase)
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fake)
    monkeypatch.setattr(session_module, "unsupported_reason", lambda variant, device: None)
    steps = []
    real_init = TrainStep.__init__

    def keep(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        steps.append(self)

    monkeypatch.setattr(TrainStep, "__init__", keep)
    config = RunConfig(recipe, dataset="synthetic", limit_train=202, limit_test=20, cache_dir=None, cpu_tune=False,
                       variant=Variant(cuda_graph=cuda_graph), hyperparameters={"epochs": 2, **hp})  # fmt: skip
    record = session().run(config).record
    assert record.status == "ok", record.error
    return record, fake, steps[0]


def test_graphs_are_captured_in_the_warm_up_per_shape_and_replayed_for_all_but_the_first_step(monkeypatch):
    plain, _, _ = graphed_run(monkeypatch, False)
    record, fake, step = graphed_run(monkeypatch, True)
    # 202 images in batches of 4: shapes 4 and 2, captured in the warm-up only.
    assert fake.captured == [((4, 3, 32, 32), "warmup"), ((2, 3, 32, 32), "warmup")]
    steps = 2 * 51
    assert fake.replays == steps - 1  # the first real step runs eagerly (see cuda_graphs.py)
    assert record.cuda_graph is True
    settings = step.cuda_settings()
    assert settings["cuda_graph"] is True and settings["graphed_shapes"] == [[4, 3, 32, 32], [2, 3, 32, 32]]
    assert settings["eager_steps"] == 2 + 1  # the warm-up's two steps, then the first real one
    # The same computation: a graph replays what the eager step would do.
    assert record.metrics.epoch_loss == plain.metrics.epoch_loss
    assert record.metrics.test_accuracy == plain.metrics.test_accuracy


def test_a_model_that_fits_itself_on_its_first_batch_still_does_so_under_graphs(monkeypatch):
    """airbench fits its whitening on the first training batch: that batch must run outside any graph."""
    hp = {"batch_size": 50, "eval_batch_size": 20, "widths": [8, 8, 8]}
    plain, _, _ = graphed_run(monkeypatch, False, "airbench_narrow", **hp)
    graphed, fake, _ = graphed_run(monkeypatch, True, "airbench_narrow", **hp)
    assert fake.replays > 0
    assert graphed.metrics.epoch_loss == plain.metrics.epoch_loss


def test_graphed_steps_refuse_data_parallel_runs():
    model = torch.nn.Linear(2, 2)
    world = World(rank=0, size=2, backend="gloo")
    with pytest.raises(UsageError, match="--cuda-graph runs in one process"):
        TrainStep(model, torch.nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.1), Variant(cuda_graph=True),
                  torch.device("cpu"), None, None, world)  # fmt: skip


def test_the_train_loop_uses_the_graphs_through_train_epoch(monkeypatch):
    fake = FakeGraphs([])
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fake)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    step = TrainStep(model, torch.nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1),
                     Variant(cuda_graph=True), torch.device("cpu"), None, torch.Generator())  # fmt: skip
    x, y = torch.randn(8, 3, 2, 2), torch.randint(0, 3, (8,))
    step.warm_up([(x[:4], y[:4])], [])
    assert len(fake.captured) == 1
    train_epoch(step, [(x[:4], y[:4]), (x[4:], y[4:])], None, epoch=1, log_every=10, report=lambda p: None)
    assert fake.replays == 1 and step.graphed.eager_steps == 2


class FakeEvent:
    """A CUDA event on a fake device clock."""

    clock: ClassVar[list[float]] = [0.0]

    def __init__(self, enable_timing: bool = False) -> None:
        assert enable_timing
        self.at = None

    def record(self, stream=None) -> None:
        self.at = FakeEvent.clock[0]

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: FakeEvent) -> float:
        return (end.at - self.at) * 1000  # milliseconds, as CUDA's


def test_cuda_events_time_each_phase_and_leave_out_pauses(monkeypatch):
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
    timer = PhaseTimer(lambda: None)
    clock = meters.CudaEventClock(CUDA)
    timer.observers.append(clock)
    FakeEvent.clock[0] = 0.0
    with timer.phase("train"):
        FakeEvent.clock[0] += 2.0
        with timer.paused():
            FakeEvent.clock[0] += 5.0  # another run's turn
        FakeEvent.clock[0] += 1.0
    with timer.phase("train"):
        FakeEvent.clock[0] += 0.5
    with timer.phase("eval"):
        FakeEvent.clock[0] += 0.25
    assert clock.seconds == {"train": pytest.approx(3.5), "eval": pytest.approx(0.25)}


def test_a_cuda_run_records_event_seconds_and_its_settings(monkeypatch):
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
    monkeypatch.setattr(meters.energy, "meter_for", lambda kind, index: "no counter here")
    timer = PhaseTimer(lambda: None)
    run = meters.attach(timer, torch.device("cuda:0"))
    with timer.phase("train"):
        FakeEvent.clock[0] += 1.5
    settings = {"cudnn_benchmark": True, "cuda_graph": False, "graphed_shapes": [], "eager_steps": None}
    recorded = meters.cuda_record(run, settings)
    assert recorded == CudaInfo(**settings, event_s={"train": pytest.approx(1.5)})
    assert meters.energy_record(run, 100) == EnergyInfo(source=None, reason="no counter here")


def test_a_cpu_run_has_no_cuda_section():
    record = session().run(RunConfig("baseline", dataset="synthetic", limit_train=20, limit_test=10,
                                     cache_dir=None, hyperparameters={"epochs": 1})).record  # fmt: skip
    assert record.status == "ok" and record.cuda is None and record.cuda_graph is False
    assert record.energy.source is not None or record.energy.reason


def test_what_observers_cost_at_the_edges_and_pauses_is_billed_to_no_phase(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("cifar_bench.training.timing.time.perf_counter", lambda: now[0])

    class Slow:  # an observer that takes a second at every edge
        def start(self, phase):
            now[0] += 1

        def stop(self, phase):
            now[0] += 1

    timer = PhaseTimer(lambda: None)
    timer.observers.append(Slow())
    with timer.phase("train"):
        now[0] += 2
        with timer.paused():
            now[0] += 5
        now[0] += 1
    assert timer.seconds["train"] == 3
