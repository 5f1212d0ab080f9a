"""One run of one recipe on one device: setup, train, evaluate, record.

Read :meth:`Session.run` top to bottom: components come in at the top (from
the registry), observers are told at the edges (``run_start``,
``train_progress``, ``epoch_end``, ``run_end``), and only the training steps
sit between the train timers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import devices, environment
from .batches import LOADERS, LoaderBatches, TensorBatches, normalize_split
from .components import Dataset, DataSource, Recipe, Transform
from .data import TensorSplit, balanced_subset, default_cache_dir, load_tensors
from .errors import PluginError, UsageError
from .events import EpochResult, RunInfo, TrainProgress
from .manager import Plugins
from .records import (
    ComponentRef,
    DatasetInfo,
    Metrics,
    RunRecord,
    Throughput,
    Timings,
    new_run_id,
    utc_now,
)
from .registry import Registry
from .timing import PhaseTimer

# Hyperparameters every recipe has; a recipe's own values override these.
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {
    "eval_batch_size": 1000,  # test images per forward pass; does not change accuracy
    "log_every": 2000,  # steps between loss-log lines
}
PROGRESS_EVERY = 50  # steps between train_progress events: cheap, yet smooth for a progress bar


@dataclass(frozen=True)
class RunConfig:
    """Everything the user chose for one run; the recipe supplies the rest."""

    recipe: str
    device: str = "cpu"
    seed: int = 0
    loader: str = "tensor"
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)  # overrides of the recipe's
    components: Mapping[str, str] = field(default_factory=dict)  # kind -> name, overrides of the recipe's
    dataset: str | None = None  # overrides the recipe's dataset
    source: DataSource = field(default_factory=DataSource)
    limit_train: int | None = None  # class-balanced subset sizes
    limit_test: int | None = None
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    repeat: int = 0


@dataclass(frozen=True)
class PreparedData:
    dataset: Dataset
    train: TensorSplit
    test: TensorSplit
    train_indices: torch.Tensor
    test_indices: torch.Tensor


def resolve_hyperparameters(recipe: Recipe, overrides: Mapping[str, Any]) -> dict[str, Any]:
    hp = {**DEFAULT_HYPERPARAMETERS, **recipe.hyperparameters, **overrides}
    for key in ("batch_size", "epochs"):
        value = hp.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UsageError(f"{key} must be a whole number of at least 1, got {value!r}")
    if not isinstance(hp.get("lr"), (int, float)) or not hp["lr"] > 0:
        raise UsageError(f"lr must be a positive number, got {hp.get('lr')!r}")
    return hp


class Session:
    """Loaded plugins and registry, plus data already decoded in this process."""

    def __init__(self, plugins: Plugins, registry: Registry) -> None:
        self.plugins, self.registry = plugins, registry
        self._data: dict[tuple, PreparedData] = {}

    # -- the run ----------------------------------------------------------------

    def run(self, config: RunConfig) -> RunRecord:
        started_at, start = utc_now(), time.perf_counter()
        recipe = self.registry.recipe(config.recipe)
        hp = resolve_hyperparameters(recipe, config.hyperparameters)
        if config.loader not in LOADERS:
            raise UsageError(f"unknown loader {config.loader!r}: use one of {', '.join(LOADERS)}")
        names = {
            "dataset": config.dataset or recipe.dataset,
            "transform": recipe.transform,
            "model": recipe.model,
            "loss": recipe.loss,
            "optimizer": recipe.optimizer,
            "scheduler": recipe.scheduler,
            **config.components,
        }
        unknown = set(config.components) - set(names) - {"dataset"}
        if unknown:
            raise UsageError(f"cannot override {sorted(unknown)}: a recipe's components are {', '.join(names)}")
        if not names["scheduler"]:
            del names["scheduler"]
        entries = {kind: self.registry.get(kind, name) for kind, name in names.items()}
        components = {kind: ComponentRef(e.name, e.plugin) for kind, e in entries.items()}
        components["recipe"] = ComponentRef(recipe.name, self.registry.get("recipe", recipe.name).plugin)
        device = torch.device(config.device)
        run_id = new_run_id(recipe.name, config.device)
        reason = devices.unavailable_reason(config.device)

        def record(status: str, **fields) -> RunRecord:
            return RunRecord(
                run_id=run_id,
                status=status,
                recipe=recipe.name,
                components=components,
                hyperparameters=hp,
                seed=config.seed,
                device=config.device,
                loader=config.loader,
                started_at=started_at,
                environment=environment.collect(devices.device_name(device) if not reason else ""),
                overrides={
                    "components": dict(config.components),
                    "hyperparameters": dict(config.hyperparameters),
                },
                **fields,
            )

        if reason:
            return record("skipped", dataset=None, metrics=Metrics(), timings=Timings(),
                          throughput=Throughput(), error=reason)  # fmt: skip

        timer = PhaseTimer(lambda: devices.synchronize(device))
        with timer.phase("setup"):
            data = self._prepare_data(entries["dataset"], names["dataset"], config)
            transform = _build(entries["transform"], Transform, hp)
            num_classes = len(data.dataset.classes)
            hp.setdefault("num_classes", num_classes)
            torch.manual_seed(config.seed)  # the model's initial weights
            model = _build(entries["model"], torch.nn.Module, hp).to(device)
            loss_fn = _build(entries["loss"], torch.nn.Module, hp).to(device)
            optimizer = _build(entries["optimizer"], torch.optim.Optimizer, hp, model.parameters())
            shuffle = torch.Generator().manual_seed(config.seed)  # batch order
            augment_rng = torch.Generator(device=device).manual_seed(config.seed)
            train_batches, test_batches = self._batches(data, transform, hp, device, config.loader, shuffle)
            scheduler = None
            if "scheduler" in entries:
                scheduler = entries["scheduler"].factory(optimizer, hp, len(train_batches))
                if not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
                    raise PluginError(
                        f"plugin {entries['scheduler'].plugin!r}: scheduler {names['scheduler']!r} returned "
                        f"{type(scheduler).__name__}, expected torch.optim.lr_scheduler.LRScheduler"
                    )
            step_scheduler = scheduler if hp.get("schedule_per", "epoch") == "step" else None

        info = RunInfo(
            run_id=run_id,
            recipe=recipe.name,
            device=config.device,
            loader=config.loader,
            hyperparameters=hp,
            dataset=data.dataset.name,
            train_size=len(data.train_indices),
            test_size=len(data.test_indices),
            steps_per_epoch=len(train_batches),
            epochs=hp["epochs"],
            repeat=config.repeat,
        )
        hook = self.plugins.hook
        hook.run_start(run=info)

        epoch_loss, epoch_seconds = [], []
        for epoch in range(1, hp["epochs"] + 1):
            before = timer.seconds["train"]
            with timer.phase("train"):
                mean_loss = train_epoch(
                    model, loss_fn, optimizer, train_batches, transform.augment, augment_rng, step_scheduler,
                    epoch=epoch, log_every=hp["log_every"], report=lambda p: hook.train_progress(run=info, progress=p),
                )  # fmt: skip
                if scheduler is not None and step_scheduler is None:
                    scheduler.step()
            epoch_loss.append(mean_loss)
            epoch_seconds.append(timer.seconds["train"] - before)
            hook.epoch_end(run=info, epoch=EpochResult(epoch, mean_loss, epoch_seconds[-1], info.train_size))

        with timer.phase("eval"):
            correct, total = evaluate(model, test_batches, num_classes)

        train_s, eval_s = timer.seconds["train"], timer.seconds["eval"]
        result = record(
            "ok",
            dataset=DatasetInfo(
                name=data.dataset.name,
                fingerprint=data.dataset.fingerprint,
                train_size=info.train_size,
                test_size=info.test_size,
                classes=list(data.dataset.classes),
                synthetic=data.dataset.synthetic,
                source=data.dataset.source,
            ),
            metrics=Metrics(
                test_accuracy=correct.sum().item() / total.sum().item(),
                per_class_accuracy={
                    c: (correct[i] / total[i]).item() if total[i] else 0.0 for i, c in enumerate(data.dataset.classes)
                },
                epoch_loss=epoch_loss,
            ),
            timings=Timings(
                setup_s=timer.seconds["setup"],
                train_s=train_s,
                eval_s=eval_s,
                total_s=time.perf_counter() - start,
                epoch_train_s=epoch_seconds,
            ),
            throughput=Throughput(
                train_img_s=info.train_size * hp["epochs"] / train_s if train_s else 0.0,
                eval_img_s=info.test_size / eval_s if eval_s else 0.0,
            ),
        )
        hook.run_end(run=info, record=result)
        return result

    # -- setup helpers ----------------------------------------------------------

    def _prepare_data(self, entry, name: str, config: RunConfig) -> PreparedData:
        key = (name, config.source, config.cache_dir, config.limit_train, config.limit_test)
        if key not in self._data:
            dataset = entry.factory(config.source)
            if not isinstance(dataset, Dataset):
                raise PluginError(
                    f"plugin {entry.plugin!r}: dataset {name!r} returned "
                    f"{type(dataset).__name__}, expected cifar_bench.Dataset"
                )
            train, test = load_tensors(dataset, config.cache_dir)[:2]
            classes = len(dataset.classes)
            train_idx = _subset(train, config.limit_train, classes, "--limit-train")
            test_idx = _subset(test, config.limit_test, classes, "--limit-test")
            self._data[key] = PreparedData(dataset, train, test, train_idx, test_idx)
        return self._data[key]

    @staticmethod
    def _batches(data: PreparedData, transform: Transform, hp, device, loader: str, shuffle):
        if loader == "tensor":
            train = normalize_split(data.train.subset(data.train_indices), transform.normalize, device)
            test = normalize_split(data.test.subset(data.test_indices), transform.normalize, device)
            return (
                TensorBatches(train, hp["batch_size"], shuffle),
                list(
                    zip(test.images.split(hp["eval_batch_size"]), test.labels.split(hp["eval_batch_size"]), strict=True)
                ),
            )
        return (
            LoaderBatches(data.dataset.train, data.train_indices, transform.normalize, hp["batch_size"],
                          device, shuffle=True, generator=shuffle),
            LoaderBatches(data.dataset.test, data.test_indices, transform.normalize, hp["eval_batch_size"],
                          device, shuffle=False),
        )  # fmt: skip


def _subset(split: TensorSplit, limit: int | None, num_classes: int, flag: str) -> torch.Tensor:
    if limit is None:
        return torch.arange(len(split))
    if limit < 1:
        raise UsageError(f"{flag} must be at least 1, got {limit}")
    if limit > len(split):
        raise UsageError(f"{flag} {limit} is larger than the split ({len(split)} images)")
    return balanced_subset(split.labels, limit, num_classes)


def _build(entry, expected: type, hp, *args):
    """Call a component factory and check that it returned the promised type."""
    built = entry.factory(*args, hp)
    if not isinstance(built, expected):
        raise PluginError(
            f"plugin {entry.plugin!r}: {entry.kind} {entry.name!r} returned "
            f"{type(built).__name__}, expected {expected.__module__}.{expected.__qualname__}"
        )
    return built


# -- the loop -------------------------------------------------------------------


def train_epoch(model, loss_fn, optimizer, batches, augment, rng, scheduler, *, epoch, log_every, report) -> float:
    """One pass over the training batches; returns the mean loss per batch.

    Losses are summed on the device and read back only every
    ``PROGRESS_EVERY`` steps, so a GPU is not made to wait after every step.
    """
    model.train()
    device = next(model.parameters()).device
    epoch_sum = torch.zeros((), device=device)
    reported_sum, reported_step, logged_sum, logged_step = 0.0, 0, 0.0, 0
    steps, images, start = len(batches), 0, time.perf_counter()
    for step, (x, y) in enumerate(batches, 1):
        if augment is not None:
            x = augment(x, rng)
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        if scheduler is not None:  # a per-step schedule
            scheduler.step()
        epoch_sum += loss.detach()
        images += len(y)
        is_log_step = step % log_every == 0
        if step % PROGRESS_EVERY == 0 or is_log_step or step == steps:
            total = epoch_sum.item()
            log_loss = None
            if is_log_step:
                log_loss = (total - logged_sum) / (step - logged_step)
                logged_sum, logged_step = total, step
            report(
                TrainProgress(
                    epoch=epoch,
                    step=step,
                    steps_per_epoch=steps,
                    images_seen=images,
                    elapsed_s=time.perf_counter() - start,
                    running_loss=(total - reported_sum) / (step - reported_step),
                    log_loss=log_loss,
                )
            )
            reported_sum, reported_step = total, step
    mean = epoch_sum.item() / max(steps, 1)
    return mean if math.isfinite(mean) else float("nan")


@torch.inference_mode()
def evaluate(model, batches, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class ``(correct, total)`` counts over the test batches."""
    model.eval()
    device = next(model.parameters()).device
    correct = torch.zeros(num_classes, dtype=torch.int64, device=device)
    total = torch.zeros(num_classes, dtype=torch.int64, device=device)
    for x, y in batches:
        predicted = model(x).argmax(dim=1)
        total += torch.bincount(y, minlength=num_classes)
        correct += torch.bincount(y[predicted == y], minlength=num_classes)
    return correct.cpu(), total.cpu()
