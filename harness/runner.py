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
import difflib
import itertools
import math
import resource
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from . import cpu_tuning, cuda_graphs, devices, distributed, environment, meters, workload
from .batches import LoaderBatches, TensorBatches, normalize_batch, to_device
from .cache import default_cache_dir
from .components import Dataset, DataSource, Recipe, Transform
from .data import TensorSplit, balanced_subset, load_tensors
from .errors import ObserverError, PluginError, UsageError, first_line, warn
from .events import EpochResult, RunInfo, TrainProgress
from .manager import PluginManager
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
    write_record,
)
from .registry import Registry
from .timing import PhaseTimer
from .variants import LOADERS, Variant, unsupported_reason

# Hyperparameters every recipe has; a recipe's own values override these.
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {
    "eval_batch_size": 1000,  # test images per forward pass; does not change accuracy
    "log_every": 2000,  # steps between loss-log lines
}
PROGRESS_EVERY = 50  # steps between train_progress events: cheap, yet smooth for a progress bar
#: Hyperparameters the harness itself reads (the loop, the loaders, the schedule and the model's output size).
HARNESS_KEYS = frozenset({"batch_size", "epochs", "eval_batch_size", "log_every", "lr", "schedule_per", "num_classes"})


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
    cpu_tune: bool = True  # train with the CPU settings measured fastest for this step on this machine (cpu_tuning)
    retune: bool = False  # measure the CPU settings again instead of keeping this machine's earlier decision
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
class RunState:
    """One run as it goes: what it is, and what it has measured so far.

    :meth:`record` makes the run's record from it at any point, so a run that
    diverges, fails or is interrupted is recorded with what it got to; it is
    the one place a :class:`RunRecord` is built.
    """

    config: RunConfig
    recipe: Recipe
    hp: dict[str, Any]  # resolved hyperparameters
    entries: dict[str, Any]  # kind -> the registry entry of the component used
    device: torch.device
    world: distributed.World
    run_id: str
    skip: str | None  # why this run cannot run here, if it cannot
    timer: PhaseTimer
    info: RunInfo  # what observers are told
    started_at: str = field(default_factory=utc_now)
    start: float = field(default_factory=time.perf_counter)
    startup_s: float | None = field(default_factory=environment.process_age_s)  # the process's life before this run
    # Measured as the run goes:
    data: PreparedData | None = None
    epoch_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_accuracy: list[float] = field(default_factory=list)
    time_to_target_s: float | None = None
    images_trained: int = 0
    correct: torch.Tensor | None = None  # per class, from the final evaluation
    total: torch.Tensor | None = None
    distributed: dict[str, Any] | None = None  # how a data-parallel run was split; None in one process
    cpu: dict[str, Any] | None = None  # the CPU settings trained with, and how they were chosen
    meters: meters.RunMeters | None = None  # CUDA events and energy counters on the phase edges
    step: TrainStep | None = None

    def record(self, status: str, error: str | None = None) -> RunRecord:
        seconds, data = self.timer.seconds, self.data
        correct, total = self.correct, self.total
        train_s, eval_s = seconds.get("train", 0.0), seconds.get("eval", 0.0)
        classes = list(data.dataset.classes) if data else []
        record = RunRecord(
            run_id=self.run_id,
            status=status,
            recipe=self.recipe.name,
            components={kind: ComponentRef(e.name, e.plugin) for kind, e in self.entries.items()},
            hyperparameters=self.hp,
            seed=self.config.seed,
            device=self.config.device,
            loader=self.config.loader,
            precision=self.config.variant.precision,
            channels_last=self.config.variant.channels_last,
            compile=self.config.variant.compile,
            deterministic=self.config.deterministic,
            started_at=self.started_at,
            error=error,
            environment=environment.collect("" if self.skip else devices.device_name(self.device)),
            overrides={
                "components": dict(self.config.components),
                "hyperparameters": dict(self.config.hyperparameters),
                "dataset": self.config.dataset,
                "limit_train": self.config.limit_train,
                "limit_test": self.config.limit_test,
            },
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
                    c: (correct[i] / total[i]).item() if total[i] else None for i, c in enumerate(classes)
                }
                if correct is not None
                else {},
                epoch_loss=self.epoch_loss,
                epoch_accuracy=self.epoch_accuracy,
                target_acc=self.config.target_acc,
                time_to_target_s=self.time_to_target_s,
            ),
            timings=Timings(
                setup_s=seconds.get("setup", 0.0),
                warmup_s=seconds.get("warmup", 0.0),
                train_s=train_s,
                eval_s=eval_s,
                epoch_eval_s=seconds.get("epoch_eval", 0.0),
                total_s=time.perf_counter() - self.start - self.timer.away_s,  # not another run's turns
                epoch_train_s=self.epoch_seconds,
                startup_s=self.startup_s,
            ),
            throughput=Throughput(
                train_img_s=self.images_trained / train_s if train_s and self.images_trained else 0.0,
                eval_img_s=len(data.test_indices) / eval_s if eval_s and data else 0.0,
            ),
            memory=_memory(self.device) if not self.skip else Memory(),
            distributed=self.distributed,
            cpu=self.cpu,
            cuda_graph=self.config.variant.cuda_graph,
            cuda=meters.cuda_record(self.meters, self.step.cuda_settings() if self.step else None),
            energy=meters.energy_record(self.meters, self.images_trained),
        )
        record.workload = workload.identify(record.to_dict())
        return record


class WatchedHyperparameters(Mapping):
    """The hyperparameters as factories see them, noting every key a factory looks up.

    This is how the harness knows which keys a run's components read, so
    that a ``--set`` key nobody reads (a typo) is refused before training.
    Factories read what they need when they are called, as every built-in
    one does; a key read only later (inside a training step) is not seen.
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values, self.read = values, set(HARNESS_KEYS)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)  # Mapping.get and `in` come through here too
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def check_overrides_read(overrides: Mapping[str, Any], hp: WatchedHyperparameters, recipe: Recipe) -> None:
    """Refuse a hyperparameter the user set that no component of the run read: it would change nothing."""
    unread = sorted(set(overrides) - hp.read)
    if not unread:
        return
    known = sorted(hp.read | set(recipe.hyperparameters) - set(unread))
    name = unread[0]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"the run reads {', '.join(known)}"
    raise UsageError(f"hyperparameter {name!r} is read by no component of recipe {recipe.name!r}: {hint}")


def check(config: RunConfig, recipe: Recipe, processes: int = 1) -> dict[str, Any]:
    """Everything about a run that can be known before it starts; returns its resolved hyperparameters.

    ``Session.run`` calls it first; ``run --nproc`` (before starting torchrun)
    and ``suite`` (before its first run) call it too, so that bad input stops
    a command before anything trains.
    """
    hp = resolve_hyperparameters(recipe, config.hyperparameters)
    if config.loader not in LOADERS:
        raise UsageError(f"unknown loader {config.loader!r}: use one of {', '.join(LOADERS)}")
    if config.target_acc is not None and not 0 < config.target_acc <= 1:
        raise UsageError(f"--target-acc is a fraction of the test set, 0..1; got {config.target_acc}")
    distributed.World(size=processes).per_rank_batch(hp["batch_size"])  # a global batch the ranks share evenly
    return hp


def resolve_hyperparameters(recipe: Recipe, overrides: Mapping[str, Any]) -> dict[str, Any]:
    hp = {**DEFAULT_HYPERPARAMETERS, **recipe.hyperparameters, **overrides}
    for key, value in hp.items():
        if not _finite(value):
            raise UsageError(f"hyperparameter {key} must be a finite value, got {value!r}")
    for key in ("batch_size", "epochs", "eval_batch_size", "log_every"):
        value = hp.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UsageError(f"{key} must be a whole number of at least 1, got {value!r}")
    lr = hp.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 or not math.isfinite(lr):
        raise UsageError(f"lr must be a positive number, got {lr!r}")
    return hp


def _finite(value: Any) -> bool:
    """False for NaN or an infinity anywhere in a value (a JSON record cannot hold them)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return True


class Session:
    """Loaded plugins and registry, plus data already decoded in this process."""

    def __init__(self, plugins: PluginManager, registry: Registry) -> None:
        self.plugins, self.registry = plugins, registry
        self._data: dict[tuple, PreparedData] = {}
        self._infos: dict[str, RunInfo] = {}  # run id -> what observers were told, until finish()
        self._decoded: dict[tuple, tuple[Dataset, TensorSplit, TensorSplit]] = {}

    # -- the run ----------------------------------------------------------------

    def run(self, config: RunConfig, turn: Callable[[], None] | None = None) -> RunRecord:
        """One run, recorded whatever its end; ``turn``, if given, is called after each training step.

        Returns the run's record, not yet written and not yet shown to
        ``run_end`` observers: whoever runs it may add to it (a suite key, a
        reference's ratios) and then hands it to :meth:`finish`.

        ``turn`` is how a run takes turns with another (``lockstep.py``): the
        time it takes is not billed to this run, and this run's random state
        is the same after it as before.
        """
        run = self.start(config)
        if run.skip:
            return self._keep(run, run.record("skipped", run.skip))
        try:
            torch.use_deterministic_algorithms(config.deterministic)
            between_steps = _turn_taker(turn, run.timer, run.device) if turn else None
            self._train_and_evaluate(run, between_steps)
        except Diverged as exc:
            result = run.record("diverged", str(exc))
            result.metrics.diverged_at = {"epoch": exc.epoch, "step": exc.step}
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (signals.Terminated says so)
            result = run.record("interrupted", str(exc) or "interrupted (Ctrl-C)")
        except ObserverError as exc:  # a plugin's hook raised: the run stops, and its record names the plugin
            if run.world.distributed:
                raise  # as any error on a rank: the others must stop now (see distributed.rank_failure)
            warn(str(exc), "error")
            result = run.record("failed", str(exc))
        except (UsageError, PluginError):
            raise  # bad input: the whole command stops with exit code 2
        except Exception as exc:  # out of memory, a kernel the device lacks ...
            if run.world.distributed:
                raise  # this rank must end now, or the others wait for it in their next collective
            result = run.record("failed", f"{type(exc).__name__}: {first_line(exc)}")
        else:
            result = run.record("ok")
        return self._keep(run, result)

    def start(self, config: RunConfig, world: distributed.World | None = None) -> RunState:
        """A run resolved and checked, not yet set up: what :meth:`run` trains, and what a record is made of.

        ``world``: the ranks the run has (by default, this process's: see distributed.init).
        """
        recipe = self.registry.recipe(config.recipe)
        world = world or distributed.current()  # the one place a run learns its ranks; passed on from here
        hp = check(config, recipe, world.size)
        entries = self.components(recipe, config)
        device = torch.device(world.device_for(config.device))
        run_id = new_run_id(recipe.name, config.device)
        return RunState(
            config=config, recipe=recipe, hp=hp, entries=entries, device=device, world=world, run_id=run_id,
            skip=devices.unavailable_reason(config.device) or unsupported_reason(config.variant, device),
            timer=PhaseTimer(lambda: devices.synchronize(device)),
            # What observers are told; the sizes are filled in once the data is read.
            info=RunInfo(run_id=run_id, recipe=recipe.name, device=config.device, loader=config.loader,
                         hyperparameters=hp, dataset=entries["dataset"].name, train_size=0, test_size=0,
                         steps_per_epoch=0, epochs=hp["epochs"], repeat=config.repeat),
        )  # fmt: skip

    def unstarted(self, config: RunConfig, status: str, error: str, seconds: float = 0.0, processes: int = 1):
        """The record of a run that never trained here (its data was missing, its torchrun died, its
        worker was lost), made as every record is, so it has every field an ordinary one has."""
        run = self.start(config, distributed.World(size=processes, backend=distributed.backend_for(config.device)
                                                   if processes > 1 else None))  # fmt: skip
        run.skip = run.skip or error  # no environment of a device that did not run
        if processes > 1:
            run.distributed = run.world.describe(run.hp["batch_size"], 0, config.loader)
            run.distributed.update(dropped_per_epoch=None, padded_per_epoch=None)  # unknown: no data was read
        run.start -= seconds  # the time it took to find out
        return self._keep(run, run.record(status, error))

    def _keep(self, run: RunState, record: RunRecord) -> RunRecord:
        self._infos[record.run_id] = run.info
        return record

    def finish(self, record: RunRecord, results_dir: Path | None) -> Path | None:
        """Show the final record to every ``run_end`` observer, then write it: the one way a record is stored.

        An observer that raises does not lose the record: it is written with
        status ``failed`` and an error naming the plugin and the hook (and
        said on stderr). ``results_dir`` None: tell the observers, write
        nothing (a data-parallel rank other than 0). Returns the file written.
        """
        info = self._infos.pop(record.run_id, None) or info_from_record(record)
        try:
            self.plugins.notify("run_end", run=info, record=record)
        except ObserverError as exc:
            warn(f"{exc}; the run's record is kept, marked failed", "error")
            record.status = "failed"
            record.error = str(exc) if record.error is None else f"{record.error}; then {exc}"
        return write_record(record, results_dir) if results_dir is not None else None

    def _train_and_evaluate(self, run: RunState, between_steps: Callable[[], float] | None) -> None:
        """Setup, warm-up, the epochs, the final evaluation: each measurement is kept in ``run`` as it is made."""
        config, recipe, hp, entries, device, world = run.config, run.recipe, run.hp, run.entries, run.device, run.world
        timer, variant = run.timer, config.variant
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        run.meters = meters.attach(timer, device)

        with timer.phase("setup"):
            data = run.data = self._prepare_data(entries["dataset"], config)
            num_classes = len(data.dataset.classes)
            hp.setdefault("num_classes", num_classes)
            watched = WatchedHyperparameters(hp)  # notes which keys the factories read
            transform = build(entries["transform"], Transform, watched)
            torch.manual_seed(config.seed)  # the model's initial weights
            model = build(entries["model"], torch.nn.Module, watched).to(device)
            loss_fn = build(entries["loss"], torch.nn.Module, watched).to(device)
            if variant.channels_last:
                model = model.to(memory_format=torch.channels_last)
            optimizer = build(entries["optimizer"], torch.optim.Optimizer, model.parameters(), watched)
            shuffle = torch.Generator().manual_seed(config.seed)  # batch order
            # Ranks augment independently (rank 0 as a single process would), but shuffle alike.
            augment_rng = torch.Generator(device=device).manual_seed(config.seed + world.rank)
            train_batches, test_batches = self._batches(data, transform, hp, device, config, shuffle, world)
            run.distributed = world.describe(hp["batch_size"], len(data.train_indices), config.loader)
            scheduler = self._scheduler(entries, optimizer, watched, len(train_batches))
            check_overrides_read(config.hyperparameters, watched, recipe)
            step = TrainStep(model, loss_fn, optimizer, variant, device, transform.augment, augment_rng, world)
            run.step = step

        with timer.phase("warmup"):  # torch.compile compiles here, never inside train time
            tune = config.cpu_tune and device.type == "cpu" and not variant.compile and not world.distributed
            warmup_train = _warmup_batches(train_batches)
            tuning = None
            if tune:
                signature = {"model": [entries["model"].name, entries["model"].plugin],
                             "batch": list(warmup_train[0][0].shape), "loader": config.loader,
                             "variant": [variant.precision, variant.channels_last, config.deterministic]}  # fmt: skip
                tuning = cpu_tuning.TuningRequest(signature, config.cache_dir or default_cache_dir(), config.retune,
                                                  config.threads)  # fmt: skip
            step.warm_up(warmup_train, _warmup_batches(test_batches), tuning, _tuning_batches(train_batches))
            run.cpu = step.cpu_record() if device.type == "cpu" else None

        info = run.info = replace(
            run.info,
            dataset=data.dataset.name,
            train_size=len(data.train_indices),
            test_size=len(data.test_indices),
            steps_per_epoch=len(train_batches),
            cpu_settings=step.decision.describe() if step.decision else "",
        )
        notify = self.plugins.notify
        notify("run_start", run=info)

        step_scheduler = scheduler if hp.get("schedule_per", "epoch") == "step" else None
        for epoch in range(1, hp["epochs"] + 1):
            before = timer.seconds["train"]
            with step.cpu.applied(), timer.phase("train"):
                mean_loss = train_epoch(
                    step, train_batches, step_scheduler, epoch=epoch, log_every=hp["log_every"],
                    report=lambda p: notify("train_progress", run=info, progress=p), between_steps=between_steps,
                )  # fmt: skip
                if scheduler is not None and step_scheduler is None:
                    scheduler.step()
            mean_loss = world.mean(mean_loss)  # over every rank's batches: what one process would report
            run.epoch_loss.append(mean_loss)
            run.epoch_seconds.append(timer.seconds["train"] - before)
            run.images_trained += info.train_size
            if epoch == 1 and step.decision is not None:  # did the settings tuning chose hold in training?
                run.cpu["check"] = step.decision.check(1e3 * run.epoch_seconds[0] / len(train_batches),
                                                       len(train_batches))  # fmt: skip
                if run.cpu["check"]["slower_than_tuned"]:
                    warn(f"training stepped {run.cpu['check']['ratio_to_tuned']:.2f}x slower than CPU tuning "
                         f"measured for {step.cpu.label}: --retune measures again")  # fmt: skip
            result = EpochResult(epoch, mean_loss, run.epoch_seconds[-1], info.train_size)
            notify("epoch_end", run=info, epoch=result)
            if config.target_acc is not None and epoch < hp["epochs"]:
                with timer.phase("epoch_eval"):  # kept out of train time
                    accuracy = _accuracy(*evaluate(step.model, test_batches, num_classes, variant, device, world))
                run.epoch_accuracy.append(accuracy)
                if accuracy >= config.target_acc and run.time_to_target_s is None:
                    run.time_to_target_s = timer.seconds["train"]
                    if config.stop_at_target:
                        break

        with timer.phase("eval"):
            correct, total = evaluate(step.model, test_batches, num_classes, variant, device, world)
        run.correct, run.total = correct, total
        if config.target_acc is not None:
            run.epoch_accuracy.append(_accuracy(correct, total))
            if run.time_to_target_s is None and run.epoch_accuracy[-1] >= config.target_acc:
                run.time_to_target_s = timer.seconds["train"]

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
            decoded = self._decoded.get((entry.name, config.source))  # see provide_data
            dataset = decoded[0] if decoded else build(entry, Dataset, config.source)
            train, test = decoded[1:] if decoded else load_tensors(dataset, config.cache_dir)[:2]
            classes = len(dataset.classes)
            train_idx = _subset(train, config.limit_train, classes, "--limit-train")
            test_idx = _subset(test, config.limit_test, classes, "--limit-test")
            self._data[key] = PreparedData(dataset, train, test, train_idx, test_idx)
        return self._data[key]

    def provide_data(self, name: str, source: DataSource, dataset: Dataset, train: TensorSplit,
                     test: TensorSplit) -> None:  # fmt: skip
        """Data decoded elsewhere: runs of dataset ``name`` from ``source`` use it instead of reading their own.

        How a suite on a Ray cluster hands each worker the data its driver decoded once.
        """
        self._decoded[(name, source)] = (dataset, train, test)

    @staticmethod
    def _batches(data: PreparedData, transform: Transform, hp, device, config: RunConfig, shuffle, world):
        memory_format = torch.channels_last if config.variant.channels_last else torch.contiguous_format
        test_indices = world.shard_test(data.test_indices)  # each rank evaluates its share; counts are summed
        if config.loader == "tensor":  # uint8 on the device, normalized there a block at a time (see batches.py)
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

    @staticmethod
    def _scheduler(entries, optimizer, hp, steps_per_epoch: int):
        if "scheduler" not in entries:
            return None
        return build(entries["scheduler"], torch.optim.lr_scheduler.LRScheduler, optimizer, hp, steps_per_epoch)


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
        self.cpu, self.decision = cpu_tuning.current(), None  # settings to train with; see warm_up
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

    def warm_up(self, train_batches, eval_batches, tuning: cpu_tuning.TuningRequest | None = None,
                tuning_batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:  # fmt: skip
        """Run each batch shape once (and choose the CPU settings), then put every state back as it was.

        Compiles (and primes kernels and caches) for the training and the
        evaluation shapes, so that none of that lands in train or eval time,
        while weights, optimizer state and random streams stay exactly as if
        it had never happened.

        Tuning times training steps as training runs them: batches from
        ``tuning_batches`` (the run's own loader, with a shuffle of its own so
        that the run's batch order is untouched) and, every PROGRESS_EVERY
        steps, the wait for the loss that a progress report makes.
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
        if tuning is not None:
            batches = tuning_batches or itertools.cycle(train_batches)
            steps = itertools.count(1)

            def step() -> None:
                loss = self(*next(batches))
                if next(steps) % PROGRESS_EVERY == 0:
                    loss.item()

            self.decision = tuning.decide(step)
            self.cpu = self.decision.settings
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
        if self.decision is not None:
            return self.decision.to_record()
        return {"threads": self.cpu.threads, "onednn": self.cpu.onednn, "tuned_ms_per_step": None, "decision": None}


def info_from_record(record: RunRecord) -> RunInfo:
    """What observers are told of a run whose record was made without one (a suite's run that never started)."""
    dataset = record.dataset
    return RunInfo(run_id=record.run_id, recipe=record.recipe, device=record.device, loader=record.loader,
                   hyperparameters=record.hyperparameters, dataset=dataset.name if dataset else "",
                   train_size=dataset.train_size if dataset else 0, test_size=dataset.test_size if dataset else 0,
                   steps_per_epoch=0, epochs=record.hyperparameters.get("epochs", 0))  # fmt: skip


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


def build(entry, expected: type, *args):
    """Call a component factory with ``args``, for every kind alike.

    A factory that raises (other than with a UsageError of its own), or that
    returns the wrong type, is its plugin's error: one line naming the plugin,
    the kind and the name, exit code 2.
    """
    try:
        built = entry.factory(*args)
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
    torch.optim.lr_scheduler.LRScheduler: "torch.optim.lr_scheduler.LRScheduler",
    Transform: "cifar_bench.Transform",
    Dataset: "cifar_bench.Dataset",
}


def _accuracy(correct: torch.Tensor, total: torch.Tensor) -> float:
    return correct.sum().item() / max(total.sum().item(), 1)


def _memory(device: torch.device) -> Memory:
    # ru_maxrss is the process's peak so far, in KiB on Linux and bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return Memory(device_peak_bytes=peak, host_peak_rss_bytes=rss)


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


def evaluate(model, batches, num_classes: int, variant: Variant, device,
             world: distributed.World = distributed.SINGLE) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Per-class ``(correct, total)`` counts over the test batches (over every rank's share of them)."""
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
