"""What observers are told while a run goes on: typed, read-only snapshots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunInfo:
    """A run about to start, as observers see it (passed to every lifecycle hook)."""

    run_id: str
    recipe: str
    device: str
    loader: str
    hyperparameters: Mapping[str, Any]
    dataset: str
    train_size: int
    test_size: int
    steps_per_epoch: int
    epochs: int
    repeat: int = 0  # which repeat of the recipe this is, from 0
    cpu_settings: str = ""  # on a CPU: the threads and kernels it trains with, and whether measured or kept


@dataclass(frozen=True)
class TrainProgress:
    """Where training stands, sent every few dozen steps.

    ``running_loss`` is the mean loss since the previous progress event;
    ``log_loss`` is set only on the steps that close a ``log_every`` window
    (the tutorial's "every 2000 mini-batches"), and holds that window's mean.
    """

    epoch: int  # from 1, as the tutorial prints it
    step: int  # steps done in this epoch
    steps_per_epoch: int
    images_seen: int  # in this epoch
    elapsed_s: float  # train time so far in this epoch
    running_loss: float
    log_loss: float | None = None

    @property
    def images_per_s(self) -> float:
        return self.images_seen / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # from 1
    mean_loss: float
    train_s: float
    images: int
