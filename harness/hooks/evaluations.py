"""Evaluations as plugins register them (the ``register_evaluations`` hook): measurements of the trained model.

An evaluation runs after a run's final test-set evaluation, each timed as its own phase (never inside
``train_s`` or ``eval_s``), and its numbers go into the record under its name. A plugin registers a factory,
``factory(hyperparameters) -> Evaluation``, as for every other kind of component: the harness builds it in
the setup phase (so a bad setting stops the run before training) and calls its ``evaluate`` with an
:class:`EvaluationInput` once the model is trained.

Light to import (no torch): the command line and ``cifar_bench`` itself import it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import UsageError

if TYPE_CHECKING:  # annotations only: importing this module must stay cheap
    import numpy as np
    import torch

    from .components import Dataset

#: What ``--evaluate`` (and a suite's ``evaluate``) takes to mean "no evaluation", even one the recipe names.
NONE = "none"


class ArrayCache(Protocol):
    """Arrays kept in cifar-bench's cache folder (``--cache-dir``) under a key, for an evaluation to reuse.

    ``load`` returns the arrays saved under exactly this ``name`` and ``key`` (a mapping of JSON values: put
    in it everything the arrays depend on), or None when there are none or the file is damaged. ``save``
    writes them whole or not at all (a temporary file, then a rename), so another process never reads half
    of one. With ``--no-cache`` nothing is kept and ``load`` always returns None. Check what ``load`` gives
    before trusting it (shapes, a digest): the cache is a convenience, never a source of truth.
    """

    def load(self, name: str, key: Mapping[str, Any]) -> dict[str, np.ndarray] | None: ...

    def save(self, name: str, key: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None: ...


@dataclass(frozen=True)
class EvaluationInput:
    """What an evaluation is given: the trained model and the run's test data, with the run's own ways to use them.

    ``images`` are the run's test images (its ``--limit-test`` subset, else the whole split) as decoded,
    uint8 ``(N, C, H, W)`` on the CPU, ``labels`` their classes and ``indices`` their positions in the
    dataset's whole test split (stable ids: the same image has the same index in every run).
    ``logits(images)`` runs the model on uint8 images as the run's final evaluation does (the run's
    ``normalize``, memory format, precision, ``eval_batch_size`` batches, inference mode) and returns float32
    logits ``(N, classes)`` on the CPU; build corrupted or shifted copies of ``images`` and pass them through
    it. ``normalize`` (float ``[0, 1]`` batches in, model inputs out) is there for evaluations that need the
    model's input itself (gradients, say); then run the model in eval mode and leave its weights alone.
    """

    model: torch.nn.Module  # trained, in eval mode, on ``device``
    device: torch.device
    images: torch.Tensor  # uint8 (N, C, H, W), CPU
    labels: torch.Tensor  # int64 (N,)
    indices: torch.Tensor  # int64 (N,): positions in the dataset's whole test split
    normalize: Callable[[torch.Tensor], torch.Tensor]
    logits: Callable[[torch.Tensor], torch.Tensor]
    dataset: Dataset  # name, classes, fingerprint (keys anything derived from the data), synthetic
    hyperparameters: Mapping[str, Any]  # the run's, resolved; read-only
    seed: int  # the run's seed
    test_accuracy: float | None  # the run's clean test accuracy (a fraction), from its final evaluation
    cache: ArrayCache


@dataclass(frozen=True)
class EvaluationOutput:
    """What an evaluation measured.

    ``metrics`` are a few named numbers (finite floats, or None for "not measured"): ``report`` summarises
    them per workload, ``compare`` shows their differences, ``plot`` and ``publish`` chart them. ``tables``
    are named tables of numbers, rows by columns (``{"accuracy": {"fog": {"1": 0.61, ...}}}``), printed after
    the run. ``details`` hold anything else as JSON values (a digest, what was left out, bins for a chart).
    Everything is stored in the run's record under the evaluation's name.
    """

    metrics: Mapping[str, float | None]
    tables: Mapping[str, Mapping[str, Mapping[str, float | None]]] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """What an evaluation factory returns: the measurement to make, and the settings that decide what it measures.

    ``evaluate(data: EvaluationInput)`` returns an :class:`EvaluationOutput` (or a plain mapping of metric name
    to number). ``settings`` (JSON values: subset sizes, seeds, bin counts) are recorded with the results and
    are part of the run's workload: runs are compared and summarised only with runs measured alike.
    """

    evaluate: Callable[[EvaluationInput], EvaluationOutput | Mapping[str, float | None]]
    settings: Mapping[str, Any] = field(default_factory=dict)


def evaluation_names(value: str | Sequence[str] | None, where: str = "--evaluate") -> tuple[str, ...] | None:
    """The evaluations a user named: ``"corruptions,calibration"`` or a list; ``"none"`` for none; None: not given.

    Refuses empty names and a name given twice (exit 2); names are checked against the registry when the run
    starts.
    """
    if value is None:
        return None
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",")]
    elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        names = [v.strip() for v in value]
    else:
        raise UsageError(f"{where} takes evaluation names (a comma-separated string or a list), got {value!r}")
    if names in ([], [""], [NONE]):
        return ()
    if any(not name or name == NONE for name in names):
        raise UsageError(f"{where} {value!r}: an empty name, or '{NONE}' beside other names")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(f"{where} names {twice[0]!r} twice")
    return tuple(names)
