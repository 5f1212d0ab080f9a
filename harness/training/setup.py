"""A run's setup and warm-up phases: its data, its components built, its batches, its step primed.

Everything that is built or primed before training happens here, inside the ``setup`` and ``warmup``
phases, so that none of it ever counts as train time: the data read (or taken from the decoded cache), the
components built from the registry's factories (fresh weights from the run's seed), the loaders, the
schedule, then one step per batch shape (where ``torch.compile`` compiles and CPU tuning measures), with
every state put back afterwards.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch

from ..cache import default_cache_dir
from ..errors import UsageError
from ..hooks.components import Recipe, Transform
from ..hooks.registry import Entry
from . import evaluations
from .batches import LoaderBatches, TensorBatches, normalize_batch, to_device
from .build import build
from .config import RunConfig
from .data import TensorSplit, balanced_subset
from .hyperparameters import WatchedHyperparameters, check_overrides_read
from .state import PreparedData, RunState
from .step import TrainStep
from .tuning import TuningRequest

#: Reads (or takes from a cache) a run's dataset: given the dataset's registry entry and the run's state.
PrepareData = Callable[[Entry, RunState], PreparedData]


@dataclass
class Parts:
    """What the training loop needs, built: the step, the batches, the schedule."""

    step: TrainStep
    train_batches: object  # TensorBatches or LoaderBatches
    test_batches: object
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    num_classes: int
    normalize: Callable | None = None  # the transform's normalize (evaluations after training use it)
    evaluations: list[evaluations.Prepared] = field(default_factory=list)  # built, to run after training


def set_up(run: RunState, prepare_data: PrepareData) -> Parts:
    """The setup phase: data, components (weights from the seed), batches and schedule; nothing trained yet."""
    config, hp, entries, device, world = run.config, run.hp, run.entries, run.device, run.world
    data = run.data = prepare_data(entries["dataset"], run)
    num_classes = len(data.dataset.classes)
    hp.setdefault("num_classes", num_classes)
    run.info = replace(run.info, dataset=data.dataset.name, train_size=len(data.train_indices),
                       test_size=len(data.test_indices))  # fmt: skip
    watched = WatchedHyperparameters(hp)  # notes which keys the factories read
    transform = build(entries["transform"], watched)
    torch.manual_seed(config.seed)  # the model's initial weights
    model = build(entries["model"], watched).to(device)
    loss_fn = build(entries["loss"], watched).to(device)
    if config.variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build(entries["optimizer"], model.parameters(), watched)
    shuffle = torch.Generator().manual_seed(config.seed)  # batch order
    # Ranks augment independently (rank 0 as a single process would), but shuffle alike.
    augment_rng = torch.Generator(device=device).manual_seed(config.seed + world.rank)
    train_batches, test_batches = _batches(run, transform, shuffle)
    run.distributed = world.describe(hp["batch_size"], len(data.train_indices), config.variant.loader)
    scheduler = None
    if "scheduler" in entries:
        scheduler = build(entries["scheduler"], optimizer, watched, len(train_batches))
    prepared, run.evaluations = evaluations.build_all(run.evaluation_entries, watched)  # they may read keys too
    check_overrides_read(config.hyperparameters, watched, run.recipe)
    step = TrainStep(model, loss_fn, optimizer, config.variant, device, transform.augment, augment_rng, world)
    return Parts(step, train_batches, test_batches, scheduler, num_classes, transform.normalize, prepared)


def check_reads(entries: dict[str, Entry], config: RunConfig, recipe: Recipe, hp: dict,
                evaluation_entries: Sequence[Entry] = ()) -> None:  # fmt: skip
    """Refuse (exit 2) a hyperparameter the user set that no component of the run reads, without its data.

    The components are built as set-up builds them, on the CPU, and dropped: what a suite checks before its
    first run (a typo in a suite's ``set`` fails before anything trains, not in every run). The class
    count is taken as 10 when the recipe does not say (the data, not read here, would say it).
    """
    watched = WatchedHyperparameters({"num_classes": 10, **hp})
    build(entries["transform"], watched)
    rng = torch.get_rng_state()  # building draws weights from the global stream: leave it as it was
    try:
        model = build(entries["model"], watched)
        build(entries["loss"], watched)
        optimizer = build(entries["optimizer"], model.parameters(), watched)
        if "scheduler" in entries:
            build(entries["scheduler"], optimizer, watched, 1)
    finally:
        torch.set_rng_state(rng)
    evaluations.build_all(list(evaluation_entries), watched)  # run --evaluate: their factories read keys too
    check_overrides_read(config.hyperparameters, watched, recipe)


def warm_up(run: RunState, parts: Parts) -> None:
    """The warm-up phase: one step per batch shape (CPU tuning measures here), then every state put back."""
    config, device, step = run.config, run.device, parts.step
    warmup_train = _warmup_batches(parts.train_batches)
    tuning = None
    if config.cpu_tune and device.type == "cpu" and not config.variant.compile and not run.world.distributed:
        model = run.entries["model"]
        signature = {"model": [model.name, model.plugin], "batch": list(warmup_train[0][0].shape),
                     "variant": config.variant.to_dict()}  # fmt: skip
        tuning = TuningRequest(signature, config.cache_dir or default_cache_dir(), config.retune, config.threads)
    step.warm_up(warmup_train, _warmup_batches(parts.test_batches), tuning, _tuning_batches(parts.train_batches))
    run.cpu = step.cpu_record() if device.type == "cpu" else None
    run.cuda_settings = step.cuda_settings if device.type == "cuda" else None  # read when the record is made


def subset_indices(split: TensorSplit, limit: int | None, num_classes: int, flag: str) -> torch.Tensor:
    """The class-balanced first ``limit`` images of a split (all of them without a limit)."""
    if limit is None:
        return torch.arange(len(split))
    if limit < 1:
        raise UsageError(f"{flag} must be at least 1, got {limit}")
    if limit > len(split):
        raise UsageError(f"{flag} {limit} is larger than the split ({len(split)} images)")
    return balanced_subset(split.labels, limit, num_classes)


def _batches(run: RunState, transform: Transform, shuffle: torch.Generator) -> tuple[object, object]:
    """The training and test batches of the run's loader (see batches.py)."""
    config, hp, data, device, world = run.config, run.hp, run.data, run.device, run.world
    memory_format = torch.channels_last if config.variant.channels_last else torch.contiguous_format
    test_indices = world.shard_test(data.test_indices)  # each rank evaluates its share; counts are summed
    if config.variant.loader == "tensor":  # uint8 on the device, normalized there a block at a time
        train = to_device(_subset_of(data.train, data.train_indices), device)
        test = to_device(_subset_of(data.test, test_indices), device)
        # Evaluation reads the whole test split each time: normalized once, as float (CIFAR-10's 10,000
        # test images: 123 MB), it pays nothing per batch; the five times larger training split stays uint8.
        test = TensorSplit(normalize_batch(test.images, transform.normalize, memory_format), test.labels)
        return (
            TensorBatches(train, hp["batch_size"], shuffle, world, transform.normalize, memory_format),
            TensorBatches(test, hp["eval_batch_size"], None),
        )
    return (
        LoaderBatches(data.dataset.train, data.train_indices, transform.normalize,
                      world.per_rank_batch(hp["batch_size"]), device, memory_format, shuffle=True,
                      generator=shuffle, world=world, seed=config.seed),
        LoaderBatches(data.dataset.test, test_indices, transform.normalize, hp["eval_batch_size"],
                      device, memory_format, shuffle=False),
    )  # fmt: skip


def _subset_of(split: TensorSplit, indices: torch.Tensor) -> TensorSplit:
    """``split.subset(indices)``, without copying the images when the indices take all of them in order."""
    if len(indices) == len(split) and torch.equal(indices, torch.arange(len(split))):
        return split
    return split.subset(indices)


def _warmup_batches(batches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One batch of each shape a phase will see (a full one, and a smaller last one).

    The DataLoader path gives its first batch only: walking a loader to find
    its last batch would cost as much as an epoch.
    """
    if isinstance(batches, TensorBatches):
        return batches.first_of_each_size()
    if isinstance(batches, list):
        shapes: dict[torch.Size, tuple] = {}
        for x, y in batches:
            shapes.setdefault(x.shape, (x, y))
        return list(shapes.values())
    return [next(iter(batches))]


def _tuning_batches(batches) -> Iterator[tuple[torch.Tensor, torch.Tensor]] | None:
    """Endless batches from the run's own resident split, with a shuffle of their own (None: other loaders).

    The DataLoader path is tuned on its warm-up batches instead: starting its
    workers once per candidate would time the start, not the steps.
    """
    if not isinstance(batches, TensorBatches):
        return None
    own = TensorBatches(batches.split, batches.batch_size, torch.Generator().manual_seed(0), batches.world,
                        batches.normalize, batches.memory_format)  # fmt: skip
    return itertools.chain.from_iterable(itertools.repeat(own))
