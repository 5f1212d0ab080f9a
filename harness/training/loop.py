"""The training loop: epochs of steps, then the evaluation, from batch to metric.

Read :func:`train_and_evaluate` top to bottom. Components come in already built (``setup.py``), observers
are told at the edges (``run_start``, ``train_progress``, ``epoch_end``), and only the training steps sit
between the train timers. Every measurement is kept in the run's :class:`~.state.RunState` as it is made,
so a run that diverges, fails or is interrupted is recorded with what it got to.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace

import torch

from ..errors import warn
from ..hooks.events import EpochResult, TrainProgress
from ..results.variant import Variant
from .config import PROGRESS_EVERY
from .setup import Parts
from .state import RunState, accuracy
from .step import TrainStep
from .timing import PhaseTimer
from .variants import autocast
from .world import SINGLE, World

#: Observers are told through this: ``notify(hook_name, **arguments)`` (PluginManager.notify).
Notify = Callable[..., None]


class Diverged(Exception):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int) -> None:
        super().__init__(f"loss became NaN or infinite in epoch {epoch}, at or before step {step}")
        self.epoch, self.step = epoch, step


def train_and_evaluate(run: RunState, parts: Parts, notify: Notify, between_steps: Callable[[], float] | None) -> None:
    """The epochs, each told to observers, then the final evaluation: each measurement kept in ``run``."""
    config, hp, timer, step = run.config, run.hp, run.timer, parts.step
    info = run.info = replace(run.info, steps_per_epoch=len(parts.train_batches),
                              cpu_settings=step.decision.describe() if step.decision else "")  # fmt: skip
    notify("run_start", run=info)
    step_scheduler = parts.scheduler if hp.get("schedule_per", "epoch") == "step" else None
    for epoch in range(1, hp["epochs"] + 1):
        before = timer.seconds["train"]
        with step.cpu.applied(), timer.phase("train"):
            mean_loss = train_epoch(
                step, parts.train_batches, step_scheduler, epoch=epoch, log_every=hp["log_every"],
                report=lambda p: notify("train_progress", run=info, progress=p), between_steps=between_steps,
            )  # fmt: skip
            if parts.scheduler is not None and step_scheduler is None:
                parts.scheduler.step()  # a per-epoch schedule
        run.epoch_loss.append(run.world.mean(mean_loss))  # over every rank's batches: what one process reports
        run.epoch_seconds.append(timer.seconds["train"] - before)
        run.images_trained += info.train_size
        if epoch == 1:
            _check_tuning(run, step, len(parts.train_batches))
        notify("epoch_end", run=info, epoch=EpochResult(epoch, run.epoch_loss[-1], run.epoch_seconds[-1],
                                                        info.train_size))  # fmt: skip
        if config.target_acc is not None and epoch < hp["epochs"]:
            with timer.phase("epoch_eval"):  # kept out of train time
                _note_accuracy(run, accuracy(*_evaluate(run, parts)))
            if run.time_to_target_s is not None and config.stop_at_target:
                break
    run.trained = True
    with timer.phase("eval"):
        run.correct, run.total = _evaluate(run, parts)
    if config.target_acc is not None:
        _note_accuracy(run, accuracy(run.correct, run.total))


def train_epoch(step: TrainStep, batches, scheduler, *, epoch: int, log_every: int,
                report: Callable[[TrainProgress], None],
                between_steps: Callable[[], float] | None = None) -> float:  # fmt: skip
    """One pass over the training batches; returns the mean loss per batch.

    Losses are summed on the device and read back only every
    ``PROGRESS_EVERY`` steps, so a GPU is not made to wait after every step.
    """
    step.model.train()
    epoch_sum = torch.zeros((), device=step.device)
    reported_sum, reported_step, logged_sum, logged_step = 0.0, 0, 0.0, 0
    steps, images, start, away = len(batches), 0, time.perf_counter(), 0.0
    for i, (x, y) in enumerate(batches, 1):
        epoch_sum += step(x, y)
        if scheduler is not None:  # a per-step schedule
            scheduler.step()
        images += len(y)
        if between_steps is not None:  # another run's step, in lockstep: not this run's time
            away += between_steps()
        is_log_step = i % log_every == 0
        if i % PROGRESS_EVERY == 0 or is_log_step or i == steps:
            total = epoch_sum.item()
            if not math.isfinite(total):
                raise Diverged(epoch, i)
            log_loss = None
            if is_log_step:
                log_loss = (total - logged_sum) / (i - logged_step)
                logged_sum, logged_step = total, i
            running = (total - reported_sum) / (i - reported_step)
            report(TrainProgress(epoch=epoch, step=i, steps_per_epoch=steps, images_seen=images,
                                 elapsed_s=time.perf_counter() - start - away, running_loss=running,
                                 log_loss=log_loss))  # fmt: skip
            reported_sum, reported_step = total, i
    return epoch_sum.item() / max(steps, 1)


def evaluate(model, batches, num_classes: int, variant: Variant, device,
             world: World = SINGLE) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Per-class ``(correct, total)`` counts over the test batches (over every rank's share of them)."""
    world.broadcast_buffers(model)  # BatchNorm statistics differ by rank: all evaluate rank 0's
    model.eval()
    correct = torch.zeros(num_classes, dtype=torch.int64, device=device)
    total = torch.zeros(num_classes, dtype=torch.int64, device=device)
    with torch.inference_mode(), autocast(variant, device) if variant.precision != "fp32" else nullcontext():
        for x, y in batches:
            predicted = model(x).argmax(dim=1)
            total += torch.bincount(y, minlength=num_classes)
            correct += torch.bincount(y[predicted == y], minlength=num_classes)
    return world.sum(correct).cpu(), world.sum(total).cpu()


def turn_taker(turn: Callable[[], None], timer: PhaseTimer, device: torch.device) -> Callable[[], float]:
    """``turn`` with this run's clock stopped and its global random state kept aside; returns seconds away."""

    def between_steps() -> float:
        away = timer.away_s
        with timer.paused():
            cpu_rng = torch.get_rng_state()
            device_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
            turn()
            torch.set_rng_state(cpu_rng)
            if device_rng is not None:
                torch.cuda.set_rng_state(device_rng, device)
        return timer.away_s - away

    return between_steps


def _evaluate(run: RunState, parts: Parts) -> tuple[torch.Tensor, torch.Tensor]:
    return evaluate(parts.step.model, parts.test_batches, parts.num_classes, run.config.variant, run.device,
                    run.world)  # fmt: skip


def _note_accuracy(run: RunState, value: float) -> None:
    """An evaluation's accuracy under --target-acc: kept, and the train time when the target is first reached."""
    run.epoch_accuracy.append(value)
    if value >= run.config.target_acc and run.time_to_target_s is None:
        run.time_to_target_s = run.timer.seconds["train"]


def _check_tuning(run: RunState, step: TrainStep, steps: int) -> None:
    """Did the CPU settings tuning chose hold in training? Recorded, and said when clearly not."""
    if step.decision is None:
        return
    check = run.cpu.check = step.decision.check(1e3 * run.epoch_seconds[0] / steps, steps)
    if check["slower_than_tuned"]:
        warn(f"training stepped {check['ratio_to_tuned']:.2f}x slower than CPU tuning "
             f"measured for {step.cpu.label}: --retune measures again")  # fmt: skip
