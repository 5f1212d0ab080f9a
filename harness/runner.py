"""One run of one recipe on one device: setup, warm-up, train, evaluate, record.

Read :meth:`Session.run` top to bottom: components come in at the top (from
the registry), observers are told at the edges (``run_start``,
``train_progress``, ``epoch_end``, ``run_end``), and only the training steps
sit between the train timers. Everything a run measured is kept in a
:class:`_Progress` as it goes, so that a run that diverges, fails or is
interrupted is still recorded with what it got to.
"""

from __future__ import annotations

import copy
import math
import resource
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import cpu_tuning, cuda_graphs, devices, distributed, environment, meters
from .batches import LOADERS, LoaderBatches, TensorBatches, to_device
from .components import Dataset, DataSource, Recipe, Transform
from .data import TensorSplit, balanced_subset, default_cache_dir, load_tensors
from .errors import PluginError, UsageError
from .events import EpochResult, RunInfo, TrainProgress
from .manager import Plugins
from .records import (
    ComponentRef,
    DatasetInfo,
    Memory,
    Metrics,
    RunRecord,
    Throughput,
    Timings,
    new_run_id,
    utc_now,
)
from .registry import Registry
from .timing import PhaseTimer
from .variants import Variant, unsupported_reason

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
    variant: Variant = field(default_factory=Variant)
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)  # overrides of the recipe's
    components: Mapping[str, str] = field(default_factory=dict)  # kind -> name, overrides of the recipe's
    dataset: str | None = None  # overrides the recipe's dataset
    source: DataSource = field(default_factory=DataSource)
    limit_train: int | None = None  # class-balanced subset sizes
    limit_test: int | None = None
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    target_acc: float | None = None  # evaluate after each epoch and note when this is reached
    stop_at_target: bool = False
    deterministic: bool = False  # torch.use_deterministic_algorithms for the run
    cpu_tune: bool = True  # time CPU settings in the warm-up and train with the fastest (see cpu_tuning)
    threads: int | None = None  # fix the CPU threads (tuning then only picks the kernels)
    repeat: int = 0


@dataclass(frozen=True)
class PreparedData:
    dataset: Dataset
    train: TensorSplit
    test: TensorSplit
    train_indices: torch.Tensor
    test_indices: torch.Tensor


class Diverged(Exception):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int) -> None:
        super().__init__(f"loss became NaN or infinite in epoch {epoch}, at or before step {step}")
        self.epoch, self.step = epoch, step


@dataclass
class _Progress:
    """What a run has measured so far: enough to record a run that stopped early."""

    timer: PhaseTimer
    epoch_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_accuracy: list[float] = field(default_factory=list)
    time_to_target_s: float | None = None
    images_trained: int = 0
    info: RunInfo | None = None
    data: PreparedData | None = None
    correct: torch.Tensor | None = None  # per class, from the final evaluation
    total: torch.Tensor | None = None
    distributed: dict[str, Any] | None = None  # how a data-parallel run was split; None in one process
    cpu: dict[str, Any] | None = None  # the CPU settings trained with, and what tuning measured
    meters: meters.RunMeters | None = None  # CUDA events and energy counters on the phase edges
    step: TrainStep | None = None


def resolve_hyperparameters(recipe: Recipe, overrides: Mapping[str, Any]) -> dict[str, Any]:
    hp = {**DEFAULT_HYPERPARAMETERS, **recipe.hyperparameters, **overrides}
    for key in ("batch_size", "epochs", "eval_batch_size", "log_every"):
        value = hp.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UsageError(f"{key} must be a whole number of at least 1, got {value!r}")
    lr = hp.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 or not math.isfinite(lr):
        raise UsageError(f"lr must be a positive number, got {lr!r}")
    return hp


class Session:
    """Loaded plugins and registry, plus data already decoded in this process."""

    def __init__(self, plugins: Plugins, registry: Registry) -> None:
        self.plugins, self.registry = plugins, registry
        self._data: dict[tuple, PreparedData] = {}

    # -- the run ----------------------------------------------------------------

    def run(self, config: RunConfig, turn: Callable[[], None] | None = None) -> RunRecord:
        """One run, recorded whatever its end; ``turn``, if given, is called after each training step.

        ``turn`` is how a run takes turns with another (``lockstep.py``): the
        time it takes is not billed to this run, and this run's random state
        is the same after it as before.
        """
        started_at, start = utc_now(), time.perf_counter()
        recipe = self.registry.recipe(config.recipe)
        hp = resolve_hyperparameters(recipe, config.hyperparameters)
        if config.loader not in LOADERS:
            raise UsageError(f"unknown loader {config.loader!r}: use one of {', '.join(LOADERS)}")
        if config.target_acc is not None and not 0 < config.target_acc <= 1:
            raise UsageError(f"--target-acc is a fraction of the test set, 0..1; got {config.target_acc}")
        entries = self.components(recipe, config)
        world = distributed.current()
        world.per_rank_batch(hp["batch_size"])  # refuses a global batch the ranks cannot share evenly
        device = torch.device(world.device_for(config.device))
        skip = devices.unavailable_reason(config.device) or unsupported_reason(config.variant, device)
        run_id = new_run_id(recipe.name, config.device)
        progress = _Progress(PhaseTimer(lambda: devices.synchronize(device)))

        def record(status: str, error: str | None = None) -> RunRecord:
            own_s = time.perf_counter() - start - progress.timer.away_s  # not another run's turns
            return self._record(run_id, status, error, recipe, hp, entries, config, device, skip, progress,
                                started_at, own_s)  # fmt: skip

        if skip:
            return record("skipped", skip)
        try:
            torch.use_deterministic_algorithms(config.deterministic)
            between_steps = _turn_taker(turn, progress.timer, device) if turn else None
            self._train_and_evaluate(config, hp, entries, device, run_id, recipe, progress, world, between_steps)
        except Diverged as exc:
            result = record("diverged", str(exc))
            result.metrics.diverged_at = {"epoch": exc.epoch, "step": exc.step}
        except KeyboardInterrupt:
            result = record("interrupted", "interrupted (Ctrl-C)")
        except (UsageError, PluginError):
            raise  # bad input: the whole command stops with exit code 2
        except Exception as exc:  # out of memory, a kernel the device lacks ...
            if world.distributed:
                raise  # this rank must end now, or the others wait for it in their next collective
            result = record("failed", f"{type(exc).__name__}: {_first_line(exc)}")
        else:
            result = record("ok")
        if progress.info is not None:
            self.plugins.hook.run_end(run=progress.info, record=result)
        return result

    def _train_and_evaluate(self, config, hp, entries, device, run_id, recipe, progress: _Progress, world,
                            between_steps) -> None:  # fmt: skip
        timer, variant = progress.timer, config.variant
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        progress.meters = meters.attach(timer, device)

        with timer.phase("setup"):
            data = progress.data = self._prepare_data(entries["dataset"], config)
            transform = build(entries["transform"], Transform, hp)
            num_classes = len(data.dataset.classes)
            hp.setdefault("num_classes", num_classes)
            torch.manual_seed(config.seed)  # the model's initial weights
            model = build(entries["model"], torch.nn.Module, hp).to(device)
            loss_fn = build(entries["loss"], torch.nn.Module, hp).to(device)
            if variant.channels_last:
                model = model.to(memory_format=torch.channels_last)
            optimizer = build(entries["optimizer"], torch.optim.Optimizer, hp, model.parameters())
            shuffle = torch.Generator().manual_seed(config.seed)  # batch order
            # Ranks augment independently (rank 0 as a single process would), but shuffle alike.
            augment_rng = torch.Generator(device=device).manual_seed(config.seed + world.rank)
            train_batches, test_batches = self._batches(data, transform, hp, device, config, shuffle, world)
            progress.distributed = world.describe(hp["batch_size"], len(data.train_indices), config.loader)
            scheduler = self._scheduler(entries, optimizer, hp, len(train_batches))
            step = TrainStep(model, loss_fn, optimizer, variant, device, transform.augment, augment_rng, world)
            progress.step = step

        with timer.phase("warmup"):  # torch.compile compiles here, never inside train time
            tune = config.cpu_tune and device.type == "cpu" and not variant.compile and not world.distributed
            step.warm_up(_warmup_batches(train_batches), _warmup_batches(test_batches), tune, config.threads)
            progress.cpu = step.cpu_record() if device.type == "cpu" else None

        info = progress.info = RunInfo(
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

        step_scheduler = scheduler if hp.get("schedule_per", "epoch") == "step" else None
        for epoch in range(1, hp["epochs"] + 1):
            before = timer.seconds["train"]
            with step.cpu.applied(), timer.phase("train"):
                mean_loss = train_epoch(
                    step, train_batches, step_scheduler, epoch=epoch, log_every=hp["log_every"],
                    report=lambda p: hook.train_progress(run=info, progress=p), between_steps=between_steps,
                )  # fmt: skip
                if scheduler is not None and step_scheduler is None:
                    scheduler.step()
            mean_loss = world.mean(mean_loss)  # over every rank's batches: what one process would report
            progress.epoch_loss.append(mean_loss)
            progress.epoch_seconds.append(timer.seconds["train"] - before)
            progress.images_trained += info.train_size
            hook.epoch_end(run=info, epoch=EpochResult(epoch, mean_loss, progress.epoch_seconds[-1], info.train_size))
            if config.target_acc is not None and epoch < hp["epochs"]:
                with timer.phase("epoch_eval"):  # kept out of train time
                    accuracy = _accuracy(*evaluate(step.model, test_batches, num_classes, variant, device))
                progress.epoch_accuracy.append(accuracy)
                if accuracy >= config.target_acc and progress.time_to_target_s is None:
                    progress.time_to_target_s = timer.seconds["train"]
                    if config.stop_at_target:
                        break

        with timer.phase("eval"):
            correct, total = evaluate(step.model, test_batches, num_classes, variant, device)
        progress.correct, progress.total = correct, total
        if config.target_acc is not None:
            progress.epoch_accuracy.append(_accuracy(correct, total))
            if progress.time_to_target_s is None and progress.epoch_accuracy[-1] >= config.target_acc:
                progress.time_to_target_s = timer.seconds["train"]

    # -- setup helpers ----------------------------------------------------------

    def components(self, recipe: Recipe, config: RunConfig) -> dict[str, Any]:
        names = {
            "dataset": config.dataset or recipe.dataset,
            "transform": recipe.transform,
            "model": recipe.model,
            "loss": recipe.loss,
            "optimizer": recipe.optimizer,
            "scheduler": recipe.scheduler,
        }
        unknown = set(config.components) - set(names)
        if unknown:
            raise UsageError(f"cannot override {sorted(unknown)}: a recipe's components are {', '.join(names)}")
        names.update(config.components)
        entries = {kind: self.registry.get(kind, name) for kind, name in names.items() if name}
        entries["recipe"] = self.registry.get("recipe", recipe.name)
        return entries

    def _prepare_data(self, entry, config: RunConfig) -> PreparedData:
        key = (entry.name, config.source, config.cache_dir, config.limit_train, config.limit_test)
        if key not in self._data:
            dataset = entry.factory(config.source)
            if not isinstance(dataset, Dataset):
                raise PluginError(
                    f"plugin {entry.plugin!r}: dataset {entry.name!r} returned "
                    f"{type(dataset).__name__}, expected cifar_bench.Dataset"
                )
            train, test = load_tensors(dataset, config.cache_dir)[:2]
            classes = len(dataset.classes)
            train_idx = _subset(train, config.limit_train, classes, "--limit-train")
            test_idx = _subset(test, config.limit_test, classes, "--limit-test")
            self._data[key] = PreparedData(dataset, train, test, train_idx, test_idx)
        return self._data[key]

    @staticmethod
    def _batches(data: PreparedData, transform: Transform, hp, device, config: RunConfig, shuffle, world):
        memory_format = torch.channels_last if config.variant.channels_last else torch.contiguous_format
        test_indices = world.shard_test(data.test_indices)  # each rank evaluates its share; counts are summed
        if config.loader == "tensor":  # uint8 on the device, normalized there a block at a time (see batches.py)
            train = to_device(_subset_of(data.train, data.train_indices), device)
            test = to_device(_subset_of(data.test, test_indices), device)
            return (
                TensorBatches(train, hp["batch_size"], shuffle, world, transform.normalize, memory_format),
                TensorBatches(test, hp["eval_batch_size"], None, normalize=transform.normalize,
                              memory_format=memory_format),
            )  # fmt: skip
        return (
            LoaderBatches(data.dataset.train, data.train_indices, transform.normalize,
                          world.per_rank_batch(hp["batch_size"]), device, memory_format, shuffle=True,
                          generator=shuffle, world=world, seed=config.seed),
            LoaderBatches(data.dataset.test, test_indices, transform.normalize, hp["eval_batch_size"],
                          device, memory_format, shuffle=False),
        )  # fmt: skip

    @staticmethod
    def _scheduler(entries, optimizer, hp, steps_per_epoch: int):
        if "scheduler" not in entries:
            return None
        entry = entries["scheduler"]
        scheduler = entry.factory(optimizer, hp, steps_per_epoch)
        if not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
            raise PluginError(
                f"plugin {entry.plugin!r}: scheduler {entry.name!r} returned "
                f"{type(scheduler).__name__}, expected torch.optim.lr_scheduler.LRScheduler"
            )
        return scheduler

    # -- the record -------------------------------------------------------------

    @staticmethod
    def _record(run_id, status, error, recipe, hp, entries, config, device, skip, progress, started_at, total_s):
        seconds, data = progress.timer.seconds, progress.data
        correct, total = progress.correct, progress.total
        train_s, eval_s = seconds.get("train", 0.0), seconds.get("eval", 0.0)
        classes = list(data.dataset.classes) if data else []
        return RunRecord(
            run_id=run_id,
            status=status,
            recipe=recipe.name,
            components={kind: ComponentRef(e.name, e.plugin) for kind, e in entries.items()},
            hyperparameters=hp,
            seed=config.seed,
            device=config.device,
            loader=config.loader,
            precision=config.variant.precision,
            channels_last=config.variant.channels_last,
            compile=config.variant.compile,
            deterministic=config.deterministic,
            started_at=started_at,
            error=error,
            environment=environment.collect("" if skip else devices.device_name(device)),
            overrides={"components": dict(config.components), "hyperparameters": dict(config.hyperparameters)},
            dataset=None
            if data is None
            else DatasetInfo(
                name=data.dataset.name,
                fingerprint=data.dataset.fingerprint,
                train_size=len(data.train_indices),
                test_size=len(data.test_indices),
                classes=classes,
                synthetic=data.dataset.synthetic,
                source=data.dataset.source,
            ),
            metrics=Metrics(
                test_accuracy=_accuracy(correct, total) if correct is not None else None,
                per_class_accuracy={
                    c: (correct[i] / total[i]).item() if total[i] else 0.0 for i, c in enumerate(classes)
                }
                if correct is not None
                else {},
                epoch_loss=progress.epoch_loss,
                epoch_accuracy=progress.epoch_accuracy,
                target_acc=config.target_acc,
                time_to_target_s=progress.time_to_target_s,
            ),
            timings=Timings(
                setup_s=seconds.get("setup", 0.0),
                warmup_s=seconds.get("warmup", 0.0),
                train_s=train_s,
                eval_s=eval_s,
                epoch_eval_s=seconds.get("epoch_eval", 0.0),
                total_s=total_s,
                epoch_train_s=progress.epoch_seconds,
            ),
            throughput=Throughput(
                train_img_s=progress.images_trained / train_s if train_s and progress.images_trained else 0.0,
                eval_img_s=len(data.test_indices) / eval_s if eval_s and data else 0.0,
            ),
            memory=_memory(device) if not skip else Memory(),
            distributed=progress.distributed,
            cpu=progress.cpu,
            cuda_graph=config.variant.cuda_graph,
            cuda=meters.cuda_record(progress.meters, progress.step.cuda_settings() if progress.step else None),
            energy=meters.energy_record(progress.meters, progress.images_trained),
        )


class TrainStep:
    """One optimizer step under the run's variant (precision, memory format, compile).

    Kept apart from the loop so that the loop reads as the tutorial's and the
    variant plumbing lives in one place.
    """

    def __init__(self, model, loss_fn, optimizer, variant: Variant, device, augment, augment_rng,
                 world: distributed.World = distributed.SINGLE) -> None:  # fmt: skip
        if variant.cuda_graph and world.distributed:
            raise UsageError("--cuda-graph runs in one process: drop --nproc or --cuda-graph")
        self.model = torch.compile(model) if variant.compile else model
        # Training steps go through DistributedDataParallel in a data-parallel run (its backward averages
        # gradients over ranks); evaluation and state use the model itself, which needs no other rank.
        self.train_model = world.wrap(self.model, device)
        self.loss_fn, self.optimizer, self.device = loss_fn, optimizer, device
        self.augment, self.augment_rng = augment, augment_rng
        self.autocast = variant.autocast(device)
        self.cpu, self.cpu_timings = cpu_tuning.current(), None  # settings to train with; see warm_up
        self.cudnn_benchmark = cuda_graphs.cudnn_autotune(device)  # cuDNN times its kernels in the warm-up
        self.graphed = None
        if variant.cuda_graph:
            self.graphed = cuda_graphs.GraphedLoss(model, loss_fn, cuda_graphs.graph_autocast(variant, device))
        # fp16 gradients underflow without loss scaling; bf16 and fp32 need none.
        self.scaler = torch.amp.GradScaler(device.type) if variant.precision == "fp16" else None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.augment is not None:
            x = self.augment(x, self.augment_rng)
        self.optimizer.zero_grad()
        if self.graphed is not None:
            loss = self.graphed(x, y)
        else:
            with self.autocast:
                loss = self.loss_fn(self.train_model(x), y)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return loss.detach()

    def warm_up(self, train_batches, eval_batches, tune_cpu: bool = False, threads: int | None = None) -> None:
        """Run each batch shape once (and tune the CPU settings), then put every state back as it was.

        Compiles (and primes kernels and caches) for the training and the
        evaluation shapes, so that none of that lands in train or eval time,
        while weights, optimizer state and random streams stay exactly as if
        it had never happened.
        """
        saved = (
            copy.deepcopy(self.model.state_dict()),
            copy.deepcopy(self.optimizer.state_dict()),
            self.scaler.state_dict() if self.scaler else None,
            torch.get_rng_state(),
            self.augment_rng.get_state(),
        )
        self.model.train()
        for x, y in train_batches:
            self(x, y)
            if self.graphed is not None:  # captured on the batch as the step sees it: augmented
                self.graphed.capture(self.augment(x, self.augment_rng) if self.augment else x, y)
        if tune_cpu:
            x, y = train_batches[0]
            self.cpu, self.cpu_timings = cpu_tuning.tune(lambda: self(x, y), cpu_tuning.candidates(threads))
        for x, _ in eval_batches:
            with torch.inference_mode(), self.autocast:
                self.model.eval()
                self.model(x)
        model_state, optimizer_state, scaler_state, rng, augment_rng = saved
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(optimizer_state)
        if self.scaler:
            self.scaler.load_state_dict(scaler_state)
        torch.set_rng_state(rng)
        self.augment_rng.set_state(augment_rng)
        self.optimizer.zero_grad()

    def cuda_settings(self) -> dict[str, Any]:
        """What this step does to be fast on CUDA (recorded with the run's CUDA event timings)."""
        shapes = self.graphed.shapes() if self.graphed is not None else []
        eager = self.graphed.eager_steps if self.graphed is not None else None
        return {"cudnn_benchmark": self.cudnn_benchmark, "cuda_graph": self.graphed is not None,
                "graphed_shapes": shapes, "eager_steps": eager}  # fmt: skip

    def cpu_record(self) -> dict[str, Any]:
        return {"threads": self.cpu.threads, "onednn": self.cpu.onednn, "tuned_ms_per_step": self.cpu_timings}


def _turn_taker(turn: Callable[[], None], timer: PhaseTimer, device: torch.device) -> Callable[[], float]:
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


def _subset_of(split: TensorSplit, indices: torch.Tensor) -> TensorSplit:
    """``split.subset(indices)``, without copying the images when the indices take all of them in order."""
    if len(indices) == len(split) and torch.equal(indices, torch.arange(len(split))):
        return split
    return split.subset(indices)


def _subset(split: TensorSplit, limit: int | None, num_classes: int, flag: str) -> torch.Tensor:
    if limit is None:
        return torch.arange(len(split))
    if limit < 1:
        raise UsageError(f"{flag} must be at least 1, got {limit}")
    if limit > len(split):
        raise UsageError(f"{flag} {limit} is larger than the split ({len(split)} images)")
    return balanced_subset(split.labels, limit, num_classes)


def build(entry, expected: type, hp, *args):
    """Call a component factory; a factory that raises or returns the wrong type is its plugin's error."""
    try:
        built = entry.factory(*args, hp)
    except (UsageError, PluginError):
        raise
    except Exception as exc:
        raise PluginError(
            f"plugin {entry.plugin!r}: {entry.kind} {entry.name!r} factory failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(built, expected):
        raise PluginError(
            f"plugin {entry.plugin!r}: {entry.kind} {entry.name!r} returned "
            f"{type(built).__name__}, expected {_TYPE_NAMES.get(expected, expected.__qualname__)}"
        )
    return built


# How the types a factory must return are spelled in error messages: as users write them.
_TYPE_NAMES = {
    torch.nn.Module: "torch.nn.Module",
    torch.optim.Optimizer: "torch.optim.Optimizer",
    Transform: "cifar_bench.Transform",
}


def _accuracy(correct: torch.Tensor, total: torch.Tensor) -> float:
    return correct.sum().item() / max(total.sum().item(), 1)


def _memory(device: torch.device) -> Memory:
    # ru_maxrss is the process's peak so far, in KiB on Linux and bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return Memory(device_peak_bytes=peak, host_peak_rss_bytes=rss)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- the loop -------------------------------------------------------------------


def train_epoch(step: TrainStep, batches, scheduler, *, epoch: int, log_every: int, report,
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
            report(
                TrainProgress(
                    epoch=epoch,
                    step=i,
                    steps_per_epoch=steps,
                    images_seen=images,
                    elapsed_s=time.perf_counter() - start - away,
                    running_loss=(total - reported_sum) / (i - reported_step),
                    log_loss=log_loss,
                )
            )
            reported_sum, reported_step = total, i
    return epoch_sum.item() / max(steps, 1)


def evaluate(model, batches, num_classes: int, variant: Variant, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class ``(correct, total)`` counts over the test batches (over every rank's share of them)."""
    world = distributed.current()
    world.broadcast_buffers(model)  # BatchNorm statistics differ by rank: all evaluate rank 0's
    model.eval()
    correct = torch.zeros(num_classes, dtype=torch.int64, device=device)
    total = torch.zeros(num_classes, dtype=torch.int64, device=device)
    with torch.inference_mode(), variant.autocast(device) if variant.precision != "fp32" else nullcontext():
        for x, y in batches:
            predicted = model(x).argmax(dim=1)
            total += torch.bincount(y, minlength=num_classes)
            correct += torch.bincount(y[predicted == y], minlength=num_classes)
    return world.sum(correct).cpu(), world.sum(total).cpu()
