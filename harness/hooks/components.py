"""The things plugins register: what each component kind is, as typed records.

A plugin hands the harness *factories*, not objects: the harness decides when
to build each piece (and on which device), so that building never counts
inside a timed phase and every run starts from fresh weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch only for the annotations: importing this module must stay cheap (see cli.py)
    import torch

    from .evaluations import Evaluation

#: Resolved hyperparameters of one run, read-only for factories.
Hyperparameters = Mapping[str, Any]


@dataclass(frozen=True)
class Recipe:
    """A named training setup: which component of each kind, and its hyperparameters.

    ``hyperparameters`` must hold at least ``batch_size``, ``epochs`` and
    ``lr``; anything else (momentum, weight decay, ``log_every`` ...) is
    passed through to the factories, which read what they need.
    """

    name: str
    model: str
    loss: str
    optimizer: str
    transform: str
    dataset: str = "cifar10"
    scheduler: str | None = None  # a learning-rate schedule, stepped as hyperparameters["schedule_per"] says
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    # Evaluations run after training unless the run names its own (run --evaluate): names of the
    # register_evaluations hook's components, e.g. ("calibration",).
    evaluations: Sequence[str] = ()


@dataclass(frozen=True)
class Transform:
    """A recipe's input pipeline, split where the harness needs to split it.

    ``normalize`` is deterministic and works on float image batches in
    ``[0, 1]`` shaped ``(N, C, H, W)``: the fast path applies it once to the
    whole decoded dataset; the DataLoader path applies it per sample after
    ``ToTensor()``.

    ``augment`` (optional) is the random part, applied to every training
    batch after ``normalize``. It must draw independently for each sample of
    the batch (one crop or flip per image, not one per batch) from the given
    generator, so that runs are reproducible from the seed.
    """

    normalize: Callable[[torch.Tensor], torch.Tensor]
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None


@dataclass(frozen=True)
class DataSource:
    """Where the user asked the data to come from: ``--data-root`` (downloads go there) or ``--data-dir``."""

    root: str = "./data"
    data_dir: str | None = None
    download: bool = True


@dataclass(frozen=True)
class Dataset:
    """Both splits of an image-classification dataset, as a dataset factory returns them.

    ``train`` and ``test`` are map-style datasets returning ``(PIL image,
    class index)``. ``fingerprint`` identifies the exact data (it keys the
    decoded-tensor cache and is stored with every result), and
    ``synthetic`` marks data that is not a real dataset, so that no result
    made from it can be mistaken for a real one.
    """

    name: str
    classes: Sequence[str]
    train: torch.utils.data.Dataset
    test: torch.utils.data.Dataset
    fingerprint: str
    synthetic: bool = False
    source: str = ""


if TYPE_CHECKING:
    # The factory signatures, one per component kind.
    DatasetFactory = Callable[[DataSource], Dataset]
    TransformFactory = Callable[[Hyperparameters], Transform]
    ModelFactory = Callable[[Hyperparameters], torch.nn.Module]
    LossFactory = Callable[[Hyperparameters], torch.nn.Module]
    OptimizerFactory = Callable[[Any, Hyperparameters], torch.optim.Optimizer]
    # (optimizer, hyperparameters, steps_per_epoch) -> scheduler
    SchedulerFactory = Callable[[torch.optim.Optimizer, Hyperparameters, int], torch.optim.lr_scheduler.LRScheduler]
    # (argument after "=" in --track NAME=ARGUMENT, or None) -> an object with lifecycle hooks as methods
    TrackerFactory = Callable[[str | None], Any]
    EvaluationFactory = Callable[[Hyperparameters], Evaluation]  # see hooks/evaluations.py


@dataclass(frozen=True)
class Kind:
    """One kind of component: the hook that registers it, what its factory builds, who may swap it."""

    name: str
    hook: str  # the register_* hook plugins implement to provide components of this kind
    builds: str  # what its factory must return, as a dotted path (and as error messages spell it)
    in_recipe: str  # "required", "optional" (a recipe may name one) or "no" (not a part of a recipe)
    swappable: bool  # a run can swap it for another (--model NAME, a suite's components table)


#: Every kind of component, in the order recipes, tables and error messages list them. The one definition.
KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("dataset", "register_datasets", "cifar_bench.Dataset", "required", False),  # --dataset swaps it
        Kind("transform", "register_transforms", "cifar_bench.Transform", "required", True),
        Kind("model", "register_models", "torch.nn.Module", "required", True),
        Kind("loss", "register_losses", "torch.nn.Module", "required", True),
        Kind("optimizer", "register_optimizers", "torch.optim.Optimizer", "required", True),
        Kind("scheduler", "register_schedulers", "torch.optim.lr_scheduler.LRScheduler", "optional", True),
        Kind("recipe", "register_recipes", "cifar_bench.Recipe", "no", False),
        # Not part of a run: --track NAME makes one per command (see execution/tracking.py); any object.
        Kind("tracker", "register_trackers", "builtins.object", "no", False),
        # Measurements of the trained model (see hooks/evaluations.py); a recipe may name defaults, a run chooses.
        Kind("evaluation", "register_evaluations", "cifar_bench.Evaluation", "no", False),
    )
}

#: The component kinds a recipe names, in the order it lists them.
COMPONENT_KINDS = tuple(name for name, kind in KINDS.items() if kind.in_recipe != "no")

#: The kinds a run can swap (``--model``, a suite's ``components``); the dataset has ``--dataset``.
SWAPPABLE_KINDS = tuple(name for name, kind in KINDS.items() if kind.swappable)
