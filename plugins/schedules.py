"""Learning-rate schedules: warm-up then cosine or linear decay, and step decay.

The harness steps a schedule after every batch when the recipe's
``schedule_per`` hyperparameter is ``"step"``, else after every epoch; each
factory here counts its length in the same unit, so a schedule always spans
the whole run, whatever ``epochs`` and ``batch_size`` are.

Hyperparameters read (fractions are of the run's length, or of ``lr``):

* ``schedule_per``: ``"step"`` or ``"epoch"`` (default ``"epoch"``).
* ``warmup_fraction``: share of the run spent ramping the learning rate up
  linearly from ``start_lr_fraction`` x lr to lr.
* ``start_lr_fraction``: the learning rate at the very first step, as a
  fraction of ``lr``.
* ``final_lr_fraction``: the learning rate at the end, as a fraction of ``lr``.
* ``lr_milestones``: for ``multistep``, the epochs after which the rate is
  multiplied by ``lr_decay``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from cifar_bench import UsageError, hookimpl

SCHEDULE_UNITS = ("step", "epoch")
DEFAULT_SCHEDULE_PER = "epoch"  # the harness's default, when a recipe does not say

# cosine: no warm-up, decay to zero (the usual SGDR-without-restarts setting)
COSINE_DEFAULTS = {"warmup_fraction": 0.0, "start_lr_fraction": 0.0, "final_lr_fraction": 0.0}
# linear: airbench's triangle, 23% of the run up from 0.2 x lr, then down to 0.07 x lr
LINEAR_DEFAULTS = {"warmup_fraction": 0.23, "start_lr_fraction": 0.2, "final_lr_fraction": 0.07}
# multistep: x0.1 at half and three quarters of the run, as in the ResNet paper
DEFAULT_LR_DECAY = 0.1


def schedule_length(hyperparameters, steps_per_epoch: int) -> int:
    """How many times the harness will step the schedule in this run."""
    per = hyperparameters.get("schedule_per", DEFAULT_SCHEDULE_PER)
    if per not in SCHEDULE_UNITS:
        raise UsageError(f"schedule_per must be one of {', '.join(SCHEDULE_UNITS)}, got {per!r}")
    return hyperparameters["epochs"] * (steps_per_epoch if per == "step" else 1)


def _fraction(hyperparameters, key: str, defaults: dict[str, float], below_one: bool = False) -> float:
    value = hyperparameters.get(key, defaults[key])
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (0 <= value < 1 if below_one else 0 <= value <= 1):
        raise UsageError(f"{key} must be a number from 0 to {'below ' if below_one else ''}1, got {value!r}")
    return float(value)


def warmup_then(decay: str, length: int, warmup: float, start: float, final: float) -> Callable[[int], float]:
    """The learning-rate factor at schedule step ``t`` (0-based) of ``length``.

    Up linearly from ``start`` to 1 over the first ``warmup`` of the run,
    then down to ``final`` at its end, linearly or along half a cosine.
    """

    def factor(t: int) -> float:
        progress = min(t / length, 1.0)
        if progress < warmup:
            return start + (1.0 - start) * progress / warmup
        down = (progress - warmup) / (1.0 - warmup)
        if decay == "linear":
            return 1.0 + (final - 1.0) * down
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * down))

    return factor


def _warmup_schedule(decay: str, defaults: dict[str, float]):
    def factory(optimizer, hyperparameters, steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
        factor = warmup_then(
            decay,
            schedule_length(hyperparameters, steps_per_epoch),
            _fraction(hyperparameters, "warmup_fraction", defaults, below_one=True),
            _fraction(hyperparameters, "start_lr_fraction", defaults),
            _fraction(hyperparameters, "final_lr_fraction", defaults),
        )
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    return factory


cosine = _warmup_schedule("cosine", COSINE_DEFAULTS)
linear = _warmup_schedule("linear", LINEAR_DEFAULTS)


def multistep(optimizer, hyperparameters, steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    epochs = hyperparameters["epochs"]
    milestones = hyperparameters.get("lr_milestones", [epochs // 2, epochs * 3 // 4])
    if not isinstance(milestones, (list, tuple)) or not all(
        isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in milestones
    ):
        raise UsageError(f"lr_milestones must be a list of epochs such as [50, 75], got {milestones!r}")
    schedule_length(hyperparameters, steps_per_epoch)  # checks schedule_per
    per_unit = steps_per_epoch if hyperparameters.get("schedule_per", DEFAULT_SCHEDULE_PER) == "step" else 1
    gamma = hyperparameters.get("lr_decay", DEFAULT_LR_DECAY)
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, [m * per_unit for m in milestones], gamma=gamma)


@hookimpl
def register_schedulers(register):
    register("cosine", cosine, "optional linear warm-up, then cosine decay to final_lr_fraction x lr")
    register("linear", linear, "linear warm-up from 0.2 x lr over 23% of the run, then linear decay to 0.07 x lr")
    register("multistep", multistep, "lr x lr_decay (0.1) after each epoch in lr_milestones (half, 3/4)")
