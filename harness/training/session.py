"""One run of one recipe on one device, start to record: :meth:`Session.run`, then :meth:`Session.finish`.

A :class:`Session` holds what runs of one process share: the loaded plugins, the registry of their
components, and data already decoded (a suite's runs of one dataset read it once). Every way of running
(the command line, suites, Ray workers, data-parallel ranks, ``ab`` sides, the Python API and the pytest
fixtures) goes through the execution layer to :meth:`Session.run`, and every record is stored by
:meth:`Session.finish`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ObserverError, PluginError, UsageError, first_line, warn
from ..hooks import manager
from ..hooks.components import KINDS, Dataset, DataSource, Recipe
from ..hooks.events import RunInfo
from ..hooks.manager import PluginManager
from ..hooks.registry import Entry, Registry, collect
from ..results.schema import DistributedInfo
from ..results.store import new_run_id, write_record
from . import devices, environment, evaluations, meters
from .build import build
from .config import RunConfig
from .data import TensorSplit, check_one_size, load_tensors
from .hyperparameters import check
from .loop import Diverged, train_and_evaluate, turn_taker
from .setup import set_up, subset_indices, warm_up
from .state import PreparedData, RunResult, RunState
from .timing import PhaseTimer
from .variants import unsupported_reason
from .world import SINGLE, World, backend_for


class Session:
    """Loaded plugins and registry, plus data already decoded in this process."""

    def __init__(self, plugins: PluginManager, registry: Registry) -> None:
        self.plugins, self.registry = plugins, registry
        self._data: dict[tuple, PreparedData] = {}
        self._decoded: dict[tuple, tuple[Dataset, TensorSplit, TensorSplit]] = {}
        self._startup_s: float | None = None  # the process's life before its first run

    @classmethod
    def load(cls, plugins: Sequence[str] = (), *, autoload: bool | None = None) -> Session:
        """A session over every plugin (``plugins``: the ``-p`` values); a broken plugin is refused (exit 2)."""
        loaded = manager.build(plugins, autoload=autoload)
        loaded.check_broken()
        return cls(loaded, collect(loaded))

    # -- the run ----------------------------------------------------------------

    def run(self, config: RunConfig, turn: Callable[[], None] | None = None, world: World = SINGLE) -> RunResult:
        """One run, recorded whatever its end; ``turn``, if given, is called after each training step.

        Returns the run's record, not yet written and not yet shown to ``run_end`` observers, with what
        they were told of it: whoever runs it may complete it (a reference's ratios) and then hands it to
        :meth:`finish`. ``turn`` is how a run takes turns with another (``execution/lockstep.py``): the time
        it takes is not billed to this run, and this run's random state is the same after it as before.
        ``world``: the ranks of a data-parallel run (one process by default).
        """
        run = self.start(config, world)
        if run.skip:
            return RunResult(run.record("skipped", run.skip), run.info)
        try:
            torch.use_deterministic_algorithms(config.variant.deterministic)
            between_steps = turn_taker(turn, run.timer, run.device) if turn else None
            self._train_and_evaluate(run, between_steps)
        except Diverged as exc:
            run.diverged_at = {"epoch": exc.epoch, "step": exc.step}
            record = run.record("diverged", str(exc))
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (signals.Terminated says so)
            record = run.record("interrupted", _interruption(exc) + (" after training" if run.trained else ""))
        except ObserverError as exc:  # a plugin's hook raised: the run stops, and its record names the plugin
            if run.world.distributed:
                raise  # as any error on a rank: the others must stop now (see execution/torchrun.py)
            warn(str(exc), "error")
            record = run.record("failed", str(exc))
        except (UsageError, PluginError):
            raise  # bad input: the whole command stops with exit code 2
        except Exception as exc:  # out of memory, a kernel the device lacks ...
            if run.world.distributed:
                raise  # this rank must end now, or the others wait for it in their next collective
            record = run.record("failed", f"{type(exc).__name__}: {first_line(exc)}")
        else:
            record = run.record("ok")
        return RunResult(record, run.info)

    def start(self, config: RunConfig, world: World = SINGLE) -> RunState:
        """A run resolved and checked, not yet set up: what :meth:`run` trains, and what a record is made of."""
        recipe = self.registry.recipe(config.recipe)
        hp = check(config, recipe)
        entries = self.components(recipe, config)
        device = torch.device(world.device_for(config.device))
        run_id = new_run_id(recipe.name, config.device)
        if self._startup_s is None:  # measured once: later runs of the process have the same start-up
            self._startup_s = environment.process_age_s()
        return RunState(
            config=config, recipe=recipe, hp=hp, entries=entries, device=device, world=world, run_id=run_id,
            skip=devices.unavailable_reason(config.device) or unsupported_reason(config.variant, device),
            timer=PhaseTimer(lambda: devices.synchronize(device)), startup_s=self._startup_s,
            evaluation_entries=evaluations.entries(self.registry, recipe, config),
            # What observers are told; the sizes are filled in once the data is read.
            info=RunInfo(run_id=run_id, recipe=recipe.name, device=config.device, loader=config.variant.loader,
                         hyperparameters=hp, dataset=entries["dataset"].name, train_size=0, test_size=0,
                         steps_per_epoch=0, epochs=hp["epochs"], repeat=config.repeat),
        )  # fmt: skip

    def unstarted(self, config: RunConfig, status: str, error: str, seconds: float = 0.0) -> RunResult:
        """The record of a run that never trained here (its data was missing, its torchrun died, its
        worker was lost), made as every record is, so it has every field an ordinary one has."""
        processes = config.processes
        world = World(size=processes, backend=backend_for(config.device) if processes > 1 else None)
        run = self.start(config, world)
        run.skip = run.skip or error  # no environment of a device that did not run
        if processes > 1:
            described = world.describe(run.hp["batch_size"], 0, config.variant.loader)
            run.distributed = DistributedInfo(**{**vars(described), "dropped_per_epoch": None,
                                                 "padded_per_epoch": None})  # unknown: no data was read  # fmt: skip
        run.start -= seconds  # the time it took to find out
        return RunResult(run.record(status, error), run.info)

    def finish(self, result: RunResult, results_dir: Path | None) -> Stored:
        """Show the final record to every ``run_end`` observer, then write it: the one way a record is stored.

        Every observer is handed the record that is written, exactly: an observer whose ``run_end`` raises
        changes nothing of it (the others are still told, and the failure is returned, naming the plugin).
        Once a run has finished training its record is always written: Ctrl-C or SIGTERM while observers
        are told, or while the record is written, marks it interrupted and writes it (a second one during
        that last write may abort it). ``results_dir`` None: tell the observers, write nothing (the Python
        API's default; a data-parallel rank other than 0).
        """
        record, problem, stopped = result.record, None, None
        try:
            self.plugins.notify("run_end", run=result.info, record=record)
        except ObserverError as exc:
            warn(f"{exc}; the run's record is kept as the other plugins saw it", "error")
            problem = str(exc)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM while observers were told
            stopped = _mark_interrupted(record, exc, "while plugins were told of it")
        if results_dir is None:
            return Stored(None, stopped is not None, problem)
        try:
            path = write_record(record, results_dir)
        except KeyboardInterrupt as exc:  # the write was stopped midway (its temporary file is gone): once more
            stopped = stopped or _mark_interrupted(record, exc, "while its record was written")
            path = write_record(record, results_dir)
        return Stored(path, stopped is not None, problem)

    def _train_and_evaluate(self, run: RunState, between_steps: Callable[[], float] | None) -> None:
        """Setup, warm-up, the epochs, the final evaluation: each measurement is kept in ``run`` as it is made."""
        if run.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(run.device)
        if not run.config.count_steps:  # a counted run starts no sampling thread (see training/callgrind.py)
            run.meters = meters.attach(run.timer, run.device)
        with run.timer.phase("setup"):
            parts = set_up(run, self._prepare_data)
        with run.timer.phase("warmup"):  # torch.compile compiles here, never inside train time
            warm_up(run, parts)
        if run.config.count_steps:
            from .instructions import count_instructions  # only a counted run needs the ctypes helper

            count_instructions(run, parts, os.environ.get("GLIBC_TUNABLES", ""))
            return
        train_and_evaluate(run, parts, self.plugins.notify, between_steps)
        evaluations.after_training(run, parts)  # run --evaluate: each in its own phase, after the final evaluation

    # -- components and data ----------------------------------------------------

    def components(self, recipe: Recipe, config: RunConfig) -> dict[str, Entry]:
        """The registry entry of each component the run uses: the recipe's, with the run's overrides."""
        names = {kind: getattr(recipe, kind) for kind, spec in KINDS.items() if spec.in_recipe != "no"}
        names["dataset"] = config.dataset or recipe.dataset
        unknown = set(config.components) - set(names)
        if unknown:
            raise UsageError(f"cannot override {sorted(unknown)}: a recipe's components are {', '.join(names)}")
        names.update(config.components)
        entries = {kind: self.registry.get(kind, name) for kind, name in names.items() if name}
        entries["recipe"] = self.registry.get("recipe", recipe.name)
        return entries

    def _prepare_data(self, entry: Entry, run: RunState) -> PreparedData:
        config = run.config
        key = (entry.name, config.source, config.cache_dir, config.limit_train, config.limit_test)
        if key not in self._data:
            decoded = self._decoded.get((entry.name, config.source))  # see provide_data
            dataset = decoded[0] if decoded else build(entry, config.source)
            train, test = decoded[1:] if decoded else load_tensors(dataset, config.cache_dir)[:2]
            check_one_size(train, test)  # data decoded elsewhere (a Ray driver's) too
            classes = len(dataset.classes)
            train_idx = subset_indices(train, config.limit_train, classes, "--limit-train")
            test_idx = subset_indices(test, config.limit_test, classes, "--limit-test")
            self._data[key] = PreparedData(dataset, train, test, train_idx, test_idx)
        return self._data[key]

    def provide_data(self, name: str, source: DataSource, dataset: Dataset, train: TensorSplit,
                     test: TensorSplit) -> None:  # fmt: skip
        """Data decoded elsewhere: runs of dataset ``name`` from ``source`` use it instead of reading their own.

        How a suite on a Ray cluster hands each worker the data its driver decoded once.
        """
        self._decoded[(name, source)] = (dataset, train, test)


@dataclass(frozen=True)
class Stored:
    """What became of a finished run's record: where it was written (None: nowhere asked), whether Ctrl-C or
    SIGTERM came while it was finished (it is then marked interrupted), and an observer's failure, if any."""

    path: Path | None
    interrupted: bool = False
    problem: str | None = None


def _interruption(exc: BaseException) -> str:
    """``interrupted (Ctrl-C)`` or ``terminated (SIGTERM)``: what stopped the run, as signals.Terminated says."""
    return str(exc) or "interrupted (Ctrl-C)"


def _mark_interrupted(record, exc: BaseException, when: str) -> str:
    """Mark a record whose run had ended interrupted, saying when; returns the reason."""
    reason = f"{_interruption(exc)} after the run ended, {when}"
    if record.status != "interrupted":
        record.error = reason if record.status == "ok" else f"{record.error}; then {reason}"
        record.status = "interrupted"
    return reason
