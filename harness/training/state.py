"""One run as it goes, and the one place its record is built.

A :class:`RunState` keeps everything a run has measured so far; :meth:`RunState.record` makes the run's
:class:`~cifar_bench.results.schema.RunRecord` from it at any point, so a run that diverges, fails or is
interrupted is still recorded with what it got to.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..hooks.components import Dataset, Recipe
from ..hooks.events import RunInfo
from ..hooks.registry import Entry
from ..results import typed, workload
from ..results.schema import (
    ComponentRef,
    CpuInfo,
    DatasetInfo,
    DistributedInfo,
    EvaluationResult,
    InstructionsInfo,
    Memory,
    Metrics,
    Overrides,
    RunRecord,
    Throughput,
    Timings,
    WorkloadInfo,
)
from ..results.store import utc_now
from . import devices, environment, meters
from .config import RunConfig
from .data import TensorSplit
from .timing import PhaseTimer
from .world import World

#: The phases of a run's evaluations after training are this prefix and each evaluation's name (evaluations.py).
EVALUATION_PHASE = "evaluation:"


@dataclass(frozen=True)
class PreparedData:
    """A run's data: the dataset, both splits decoded, and the indices of the subsets it uses."""

    dataset: Dataset
    train: TensorSplit
    test: TensorSplit
    train_indices: torch.Tensor
    test_indices: torch.Tensor


@dataclass(frozen=True)
class RunResult:
    """What a run gives back: its record, and what its observers were told of it."""

    record: RunRecord
    info: RunInfo


@dataclass
class RunState:
    """One run as it goes: what it is, and what it has measured so far."""

    config: RunConfig
    recipe: Recipe
    hp: dict[str, Any]  # resolved hyperparameters
    entries: dict[str, Entry]  # kind -> the registry entry of the component used
    device: torch.device
    world: World
    run_id: str
    skip: str | None  # why this run cannot run here, if it cannot
    timer: PhaseTimer
    info: RunInfo  # what observers are told
    startup_s: float | None  # the process's life before its first run (see Session)
    started_at: str = field(default_factory=utc_now)
    start: float = field(default_factory=time.perf_counter)
    # Measured as the run goes:
    data: PreparedData | None = None
    epoch_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_accuracy: list[float] = field(default_factory=list)
    time_to_target_s: float | None = None
    diverged_at: dict[str, int] | None = None
    images_trained: int = 0
    trained: bool = False  # every epoch done: an interruption now loses no training
    correct: torch.Tensor | None = None  # per class, from the final evaluation
    total: torch.Tensor | None = None
    distributed: DistributedInfo | None = None  # how a data-parallel run was split; None in one process
    cpu: CpuInfo | None = None  # the CPU settings trained with, and how they were chosen
    meters: meters.RunMeters | None = None  # CUDA events and energy counters on the phase edges
    cuda_settings: Callable[[], dict[str, Any]] | None = None  # what the training step did to be fast on CUDA
    instructions: InstructionsInfo | None = None  # counted under valgrind (config.count_steps)
    # The evaluations after training (see evaluations.py): their registry entries, and what each measured.
    evaluation_entries: list[Entry] = field(default_factory=list)
    evaluations: dict[str, EvaluationResult] = field(default_factory=dict)

    def record(self, status: str, error: str | None = None) -> RunRecord:
        """The run's record as it stands, with ``status`` and ``error``."""
        config = self.config
        variant = config.variant
        record = RunRecord(
            run_id=self.run_id,
            status=status,
            recipe=self.recipe.name,
            components={kind: ComponentRef(e.name, e.plugin) for kind, e in self.entries.items()},
            hyperparameters=self.hp,
            seed=config.seed,
            device=config.device,
            loader=variant.loader,
            precision=variant.precision,
            channels_last=variant.channels_last,
            compile=variant.compile,
            deterministic=variant.deterministic,
            cuda_graph=variant.cuda_graph,
            started_at=self.started_at,
            error=error,
            environment=environment.collect("" if self.skip else devices.device_name(self.device)),
            overrides=Overrides(
                dict(config.components),
                dict(config.hyperparameters),
                config.dataset,
                config.limit_train,
                config.limit_test,
            ),
            dataset=self._dataset_info(),
            metrics=self._metrics(),
            timings=self._timings(),
            throughput=self._throughput(),
            memory=_memory(self.device) if not self.skip else Memory(),
            distributed=self.distributed,
            cpu=self.cpu,
            cuda=meters.cuda_record(self.meters, self.cuda_settings() if self.cuda_settings else None),
            energy=meters.energy_record(self.meters, self.images_trained),
            suite_key=config.suite_key,
            role=config.role,
            instructions=self.instructions,
            evaluations=dict(self.evaluations),
        )
        record.workload = typed.build(WorkloadInfo, workload.identify(record.to_dict()))
        return record

    def _dataset_info(self) -> DatasetInfo | None:
        data = self.data
        if data is None:
            return None
        return DatasetInfo(name=data.dataset.name, fingerprint=data.dataset.fingerprint,
                           train_size=len(data.train_indices), test_size=len(data.test_indices),
                           classes=list(data.dataset.classes), synthetic=data.dataset.synthetic,
                           source=data.dataset.source)  # fmt: skip

    def _metrics(self) -> Metrics:
        correct, total = self.correct, self.total
        classes = list(self.data.dataset.classes) if self.data else []
        per_class = {}
        if correct is not None:
            per_class = {c: (correct[i] / total[i]).item() if total[i] else None for i, c in enumerate(classes)}
        return Metrics(
            test_accuracy=accuracy(correct, total) if correct is not None else None,
            per_class_accuracy=per_class,
            epoch_loss=self.epoch_loss,
            epoch_accuracy=self.epoch_accuracy,
            target_acc=self.config.target_acc,
            time_to_target_s=self.time_to_target_s,
            diverged_at=self.diverged_at,
        )

    def _timings(self) -> Timings:
        seconds = self.timer.seconds
        return Timings(
            setup_s=seconds.get("setup", 0.0),
            warmup_s=seconds.get("warmup", 0.0),
            train_s=seconds.get("train", 0.0),
            eval_s=seconds.get("eval", 0.0),
            epoch_eval_s=seconds.get("epoch_eval", 0.0),
            total_s=time.perf_counter() - self.start - self.timer.away_s,  # not another run's turns
            epoch_train_s=self.epoch_seconds,
            startup_s=self.startup_s,
            evaluation_s=sum(v for phase, v in seconds.items() if phase.startswith(EVALUATION_PHASE)),
        )

    def _throughput(self) -> Throughput:
        train_s, eval_s = self.timer.seconds.get("train", 0.0), self.timer.seconds.get("eval", 0.0)
        return Throughput(
            train_img_s=self.images_trained / train_s if train_s and self.images_trained else 0.0,
            eval_img_s=len(self.data.test_indices) / eval_s if eval_s and self.data else 0.0,
        )


def info_from_record(record: RunRecord) -> RunInfo:
    """What observers are told of a run whose record was made elsewhere (another process, a Ray worker)."""
    dataset = record.dataset
    return RunInfo(run_id=record.run_id, recipe=record.recipe, device=record.device, loader=record.loader,
                   hyperparameters=record.hyperparameters, dataset=dataset.name if dataset else "",
                   train_size=dataset.train_size if dataset else 0, test_size=dataset.test_size if dataset else 0,
                   steps_per_epoch=0, epochs=record.hyperparameters.get("epochs", 0))  # fmt: skip


def accuracy(correct: torch.Tensor, total: torch.Tensor) -> float:
    """The fraction of test images classified correctly, from per-class counts."""
    return correct.sum().item() / max(total.sum().item(), 1)


def _memory(device: torch.device) -> Memory:
    # ru_maxrss is the process's peak so far, in KiB on Linux and bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return Memory(device_peak_bytes=peak, host_peak_rss_bytes=rss)
