"""A run measured in instructions (``run --measure instructions``): N training steps and one evaluation
pass, each counted under callgrind, instead of epochs timed.

The run is set up and warmed up as every run is; then the N batches are taken from the run's own
loader (outside any count), trained on once uncounted so that the allocator's caches and the
interpreter's specialised bytecode reach the state they keep, and trained on again counted; then the
test batches are evaluated once, counted. The counts go into the record's ``instructions`` section;
the record's times are valgrind's and say nothing of native speed.

The process must run under valgrind, started by ``execution/valgrind.py`` (``cifar-bench run`` does
that); why this mechanism, and what keeps counts reproducible: ``callgrind.py``.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import torch

from ..errors import UsageError
from ..results.schema import InstructionsInfo
from .callgrind import MECHANISM, OUT_DIR_ENV, TOOL, counting, read_counts, under_valgrind, valgrind_version
from .loop import evaluate
from .setup import Parts
from .state import RunState

#: The counted regions' labels, one dump each.
TRAIN_LABEL, EVAL_LABEL = "train", "eval"


def count_instructions(run: RunState, parts: Parts, malloc: str = "") -> None:
    """The counted steps and evaluation of a run with ``config.count_steps``; the counts kept in ``run``."""
    out_dir = os.environ.get(OUT_DIR_ENV)
    if not out_dir or not under_valgrind():
        raise UsageError("instructions are counted under valgrind: use 'cifar-bench run --measure instructions', "
                         "which starts it")  # fmt: skip
    steps, step = run.config.count_steps, parts.step
    batches = list(itertools.islice(_endless(parts.train_batches), steps))
    step.model.train()
    with step.cpu.applied():
        losses = [step(x, y) for x, y in batches]  # uncounted: the same steps, to settle caches first
        with run.timer.phase("train"), counting(TRAIN_LABEL):
            for x, y in batches:
                losses.append(step(x, y))
    run.epoch_loss.append(torch.stack(losses[steps:]).mean().item())
    run.images_trained = 2 * sum(len(y) for _, y in batches)
    run.trained = True
    with run.timer.phase("eval"), counting(EVAL_LABEL):
        run.correct, run.total = evaluate(step.model, parts.test_batches, parts.num_classes, run.config.variant,
                                          run.device, run.world)  # fmt: skip
    run.instructions = measured(read_counts(Path(out_dir)), steps, int(run.total.sum()), malloc)


def measured(counts: dict[str, int], steps: int, eval_images: int, malloc: str = "") -> InstructionsInfo:
    """The record's section from the counted regions (``read_counts``): totals and per step / per image."""
    if TRAIN_LABEL not in counts:
        raise RuntimeError(f"callgrind wrote no count for the training steps (found: {sorted(counts) or 'none'})")
    evaluated = counts.get(EVAL_LABEL)
    return InstructionsInfo(
        tool=TOOL, valgrind=valgrind_version(), mechanism=MECHANISM, arch=os.uname().machine, steps=steps,
        train=counts[TRAIN_LABEL], per_step=counts[TRAIN_LABEL] / steps, eval_images=eval_images, eval=evaluated,
        per_eval_image=evaluated / eval_images if evaluated is not None and eval_images else None, malloc=malloc,
    )  # fmt: skip


def _endless(batches):
    """The loader's batches, epoch after epoch (its own shuffle each time), for as many steps as asked."""
    return itertools.chain.from_iterable(itertools.repeat(batches))
