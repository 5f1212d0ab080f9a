"""Experiment trackers for one command (``--track NAME[=ARGUMENT]``): made, told of every run, closed.

A tracker is what a ``register_trackers`` factory makes (the built-in ``mlflow`` and ``tensorboard`` come
from the ordinary plugin ``cifar_bench.plugins.trackers``): an object with any of the lifecycle hooks as
methods, and optionally ``close()`` and ``problem``. This module decides where and when:

- **made** once per command, by :meth:`Trackers.start`, in the process that finishes the records: the
  command's own for ``run``, ``suite`` and the Python API; rank 0 of a data-parallel run. The other ranks
  and the ``--nproc`` launcher make none (the launcher checks the names, so that a typo is exit code 2
  before torchrun starts). An unknown name is exit code 2 with the closest names, before anything trains.
- **told** as an observer, registered inline before the console (so the console prints a run's results
  before a tracker logs them). A run whose record another process finished and wrote (a suite's
  data-parallel run: its rank 0 did) is told to the trackers alone once its record is back
  (:meth:`Trackers.tell`): its final numbers and per-epoch values, not its running loss.
- **closed** once, in a ``finally`` around the command's runs, so interrupted and failed ones too: MLflow's
  parent run ends there.

The failure rule: a tracker never fails or loses a run, nor changes the exit code. Each tracker is wrapped
in a :class:`Guarded` observer that catches what its hooks raise; that is said once on stderr, and the
tracker is told nothing more. A factory that raises (a library missing, a server not answering) is the same
failure before the first run. (The built-in trackers apply the rule themselves too, with their own words.)
The warning is the only word of it: the record is not told, because every observer, the trackers among
them, is shown the record exactly as it is written, so it cannot say how their own logging of it went.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import PluginError, UsageError, first_line, warn
from ..hooks import specs as hookspecs
from ..hooks.manager import LIFECYCLE_HOOKS, register_inline
from ..hooks.registry import Entry, Registry
from ..hooks.specs import hookimpl
from ..training.session import Session
from ..training.state import RunResult
from ..training.world import SINGLE, World

#: The tracker ``--mlflow-experiment NAME`` gives its argument to (as ``--track mlflow=NAME`` does).
MLFLOW = "mlflow"
#: Each lifecycle hook's arguments, in its spec's order.
HOOK_ARGS = {name: tuple(inspect.signature(getattr(hookspecs, name)).parameters) for name in LIFECYCLE_HOOKS}


@dataclass(frozen=True)
class TrackSpec:
    """One ``--track`` value: the tracker's name, and what followed ``=`` (None: no ``=``)."""

    name: str
    argument: str | None = None

    @property
    def text(self) -> str:
        """As written on the command line (and as a warning names the tracker)."""
        return self.name if self.argument is None else f"{self.name}={self.argument}"


def parse(values: Sequence[str], mlflow_experiment: str | None = None) -> list[TrackSpec]:
    """``--track`` values (``NAME`` or ``NAME=ARGUMENT``), each once, in order; ``--mlflow-experiment`` as
    the ``mlflow`` tracker's argument. Bad syntax is a UsageError (exit code 2); names are checked later."""
    if isinstance(values, str) or not all(isinstance(value, str) for value in values):
        raise UsageError(f"track takes a list of tracker names, e.g. ['mlflow', 'tensorboard=runs'], got {values!r}")
    found: list[TrackSpec] = []
    for value in values:
        name, equals, argument = value.partition("=")
        if not name.strip():
            raise UsageError(f"--track {value!r}: name a tracker, e.g. --track mlflow (see 'cifar-bench list')")
        found.append(TrackSpec(name.strip(), argument if equals else None))
    if mlflow_experiment is not None:
        found = _with_experiment(found, mlflow_experiment)
    return list(dict.fromkeys(found))  # the first of each, in order


def _with_experiment(found: list[TrackSpec], experiment: str) -> list[TrackSpec]:
    if not experiment.strip():
        raise UsageError("--mlflow-experiment: give the experiment a name")
    mlflow = [spec for spec in found if spec.name == MLFLOW]
    if not mlflow:
        raise UsageError("--mlflow-experiment names the experiment of --track mlflow: add --track mlflow")
    for spec in mlflow:
        if spec.argument not in (None, experiment):
            raise UsageError(f"--track {spec.text} and --mlflow-experiment {experiment} name two experiments: "
                             "keep one")  # fmt: skip
    return [replace(spec, argument=experiment) if spec.name == MLFLOW else spec for spec in found]


def check(registry: Registry, found: Sequence[TrackSpec]) -> None:
    """Refuse (exit code 2, with the closest names) a tracker no plugin registers."""
    for spec in found:
        registry.get("tracker", spec.name)


class Guarded:
    """One tracker as an observer plugin: each of its hooks called under the failure rule."""

    def __init__(self, spec: TrackSpec, plugin: str, tracker: Any, problem: str | None = None) -> None:
        self.spec, self.plugin, self.tracker = spec, plugin, tracker
        self._problem = problem  # what this guard caught (a tracker's own failure is its ``problem``)
        self._hooks = {} if tracker is None else hooks_of(tracker, spec, plugin)
        self._closed = False
        self.ended: set[str] = set()  # run ids whose run_end this tracker was told (or would have been)

    @property
    def problem(self) -> str | None:
        """What stopped the tracker, in one line, or None while all is well."""
        own = getattr(self.tracker, "problem", None)
        return self._problem or (own if isinstance(own, str) and own else None)

    @hookimpl
    def run_start(self, run) -> None:
        self._call("run_start", run)

    @hookimpl
    def train_progress(self, run, progress) -> None:
        self._call("train_progress", run, progress)

    @hookimpl
    def epoch_end(self, run, epoch) -> None:
        self._call("epoch_end", run, epoch)

    @hookimpl
    def run_end(self, run, record) -> None:
        self.ended.add(record.run_id)
        self._call("run_end", run, record)

    def _call(self, hook: str, *args: Any) -> None:
        found = self._hooks.get(hook)
        if found is None or self._problem is not None:
            return
        method, picked = found
        try:
            method(*(args[i] for i in picked))
        except Exception as exc:
            self.fail(f"{hook} failed: {type(exc).__name__}: {first_line(exc)}")

    def close(self) -> None:
        """The tracker's ``close()``, once (its failure is said; every record is written by now)."""
        close = getattr(self.tracker, "close", None)
        if self._closed or not callable(close):
            return
        self._closed = True
        try:
            close()
        except Exception as exc:
            self.fail(f"close failed: {type(exc).__name__}: {first_line(exc)}")

    def fail(self, what: str) -> None:
        self._problem = f"{self.spec.name}: {what}"
        warn(f"tracker {self.spec.text!r} (plugin {self.plugin!r}) stopped: {self._problem}; "
             "the runs are recorded without it")  # fmt: skip


def hooks_of(tracker: Any, spec: TrackSpec, plugin: str) -> dict[str, tuple[Callable[..., Any], tuple[int, ...]]]:
    """Each lifecycle hook the tracker has, with the positions of the arguments it takes (of the hook's).

    A tracker with none, or whose method takes an argument the hook does not pass, is its plugin's bug:
    a PluginError (exit code 2) before the first run, as pluggy refuses such a plugin.
    """
    found = {}
    for hook, names in HOOK_ARGS.items():
        method = getattr(tracker, hook, None)
        if not callable(method):
            continue
        wanted = [p.name for p in inspect.signature(method).parameters.values()
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]  # fmt: skip
        extra = [name for name in wanted if name not in names]
        if extra:
            raise PluginError(f"plugin {plugin!r}: tracker {spec.name!r}: {hook}({', '.join(wanted)}) takes "
                              f"{', '.join(map(repr, extra))}, which the hook does not pass; its arguments are "
                              f"({', '.join(names)})")  # fmt: skip
        found[hook] = (method, tuple(names.index(name) for name in wanted))
    if not found:
        raise PluginError(f"plugin {plugin!r}: tracker {spec.name!r} factory returned {type(tracker).__name__}, "
                          f"which has none of the hooks {', '.join(HOOK_ARGS)}")  # fmt: skip
    return found


def make(entry: Entry, spec: TrackSpec) -> Guarded:
    """The tracker ``spec`` asks for, from its factory; a factory that fails makes a tracker that did."""
    try:
        tracker = entry.factory(spec.argument)
    except UsageError:
        raise  # the argument is bad: exit code 2, nothing has run
    except Exception as exc:
        guarded = Guarded(spec, entry.plugin, None)
        guarded.fail(f"could not be made: {type(exc).__name__}: {first_line(exc)}")
        return guarded
    return Guarded(spec, entry.plugin, tracker)


class Trackers:
    """The trackers of one command, each :class:`Guarded`; a context manager that closes them."""

    def __init__(self, guards: Sequence[Guarded] = ()) -> None:
        self.guards = list(guards)

    @classmethod
    def start(cls, session: Session, found: Sequence[TrackSpec], world: World = SINGLE) -> Trackers:
        """Check the names (every process: the same answer) and, in the main process, make the trackers
        and register them as observers of ``session``'s runs."""
        check(session.registry, found)
        if not world.main:
            return cls()
        guards: list[Guarded] = []
        try:
            for spec in found:
                guards.append(make(session.registry.get("tracker", spec.name), spec))
        except BaseException:  # a later one's argument refused (exit 2): the ones made already are closed
            cls(guards).close()
            raise
        for guarded in guards:
            if guarded.tracker is not None:
                register_inline(session.plugins, guarded, f"tracker {guarded.spec.text}")
        return cls(guards)

    def tell(self, result: RunResult) -> None:
        """A run's end, to the trackers alone, if they were not told already: its record was finished and
        written by another process (a suite's data-parallel run's rank 0), which has no trackers."""
        for guarded in self.guards:
            if result.record.run_id not in guarded.ended:
                guarded.run_end(result.info, result.record)

    def close(self) -> None:
        for guarded in self.guards:
            guarded.close()

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
