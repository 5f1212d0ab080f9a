"""What the experiment trackers share: the failure rule, cheap progress hooks, and what a run is logged as.

A tracker (``mlflow_tracker``, ``tensorboard_tracker``) is an observer
object whose four lifecycle hooks live here, in :class:`Tracker`; a
subclass says how to open a run, write points and finish it.

The failure rule: a tracker never loses or fails a run. The first thing
that goes wrong (the back end not installed, a server that does not answer,
any error of its own) is caught, written as one warning line on stderr,
kept in :attr:`Tracker.problem`, and tracking stops for the rest of the
command; training and the record go on as if no tracker were there.

Cost: ``train_progress`` runs inside the timed training phase, so it only
appends a tuple to a list (about a microsecond); points are written in one
batch at ``epoch_end`` and ``run_end``, which are outside the timed phase.

Steps: metrics taken during training (``running_loss``,
``running_images_per_s``) are at the *global* step, training steps since the
run's start across epochs; per-epoch metrics (``epoch_loss``,
``epoch_accuracy``, ``epoch_train_s``, ``epoch_images_per_s``) are at the
epoch number (from 1), so that recipes of different batch sizes line up;
the final metrics are at the last epoch's number.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import sys
import time
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

from cifar_bench import EpochResult, RunInfo, RunRecord, TrainProgress, hookimpl

#: How long a description of a failure may be in the warning line, in characters.
PROBLEM_CHARS = 300


class Point(NamedTuple):
    """One metric value: its name, value, step and wall-clock time (seconds since the epoch)."""

    key: str
    value: float
    step: int
    wall_s: float


class Tracker:
    """The lifecycle hooks every tracker shares; subclasses implement the ``_open``, ``_write``... methods.

    Register the object itself as a plugin (its methods are the hook
    implementations), and call :meth:`close` when the command ends.
    """

    #: The back end's name, as the warning line and :attr:`problem` say it.
    name = "tracker"

    def __init__(self, stream=None) -> None:
        #: What stopped this tracker ("mlflow: cannot reach ..."), or None while all is well.
        self.problem: str | None = None
        self._stream = stream  # where the warning goes; None: sys.stderr at the time of writing
        self._points: dict[str, list[Point]] = {}  # run id -> points not written yet, for runs started
        self._closed = False
        # Data-parallel runs call the hooks on every rank; only rank 0 logs (torchrun sets RANK).
        self.enabled = os.environ.get("RANK", "0") in ("", "0")
        if self.enabled:  # a command that never calls close() (a plugin file of the user's) still ends its runs
            atexit.register(_close_at_exit, weakref.ref(self))

    # -- the hooks ------------------------------------------------------------------

    @hookimpl
    def run_start(self, run: RunInfo) -> None:
        if self._live():
            self._points[run.run_id] = []
            self._guarded(f"starting run {run.run_id}", self._open, run)

    @hookimpl
    def train_progress(self, run: RunInfo, progress: TrainProgress) -> None:
        # Inside the timed phase: append and nothing else (see the module's docs for the measured cost).
        points = self._points.get(run.run_id)
        if points is not None:
            step = (progress.epoch - 1) * progress.steps_per_epoch + progress.step
            now = time.time()
            points.append(Point("running_loss", progress.running_loss, step, now))
            points.append(Point("running_images_per_s", progress.images_per_s, step, now))

    @hookimpl
    def epoch_end(self, run: RunInfo, epoch: EpochResult) -> None:
        points = self._points.get(run.run_id)
        if points is None or not self._live():
            return
        points.extend(epoch_points(epoch))
        self._points[run.run_id] = []
        self._guarded(f"logging epoch {epoch.epoch} of run {run.run_id}", self._write, run, points)

    @hookimpl
    def run_end(self, run: RunInfo, record: RunRecord) -> None:
        started = run.run_id in self._points  # else another process ran it: the record is all there is
        points = self._points.pop(run.run_id, [])
        if self._live():
            from_record = [] if started else recorded_epoch_points(record)
            points = [*points, *from_record, *accuracy_points(record), *final_points(record)]
            self._guarded(f"ending run {run.run_id}", self._finish, run, record, points)

    def close(self) -> None:
        """End what this command opened (the parent runs, files left open); call once the command is done.

        Safe to call more than once, and after a failure (it then does nothing);
        called at the interpreter's exit if nobody did.
        """
        if not self._closed:
            self._closed = True
            if self._live(closing=True):
                self._guarded("closing", self._close)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- what a subclass implements ---------------------------------------------------

    def _open(self, run: RunInfo) -> None:
        """Start logging ``run`` (its parameters are known; no metric yet)."""
        raise NotImplementedError

    def _write(self, run: RunInfo, points: list[Point]) -> None:
        """Write ``points`` of a started run."""
        raise NotImplementedError

    def _finish(self, run: RunInfo, record: RunRecord, points: list[Point]) -> None:
        """Write the last ``points`` and what the record holds, and end the run (started or not: a skipped one)."""
        raise NotImplementedError

    def _close(self) -> None:
        """End what spans the command's runs."""

    def _abandon(self) -> None:
        """Best effort, after a failure: leave nothing half-open (errors here are ignored)."""

    def _describe(self, exc: Exception) -> str:
        """A failure in one line: the back end's words, cut short."""
        return one_line(exc)

    # -- the failure rule -------------------------------------------------------------

    def _live(self, closing: bool = False) -> bool:
        return self.enabled and self.problem is None and (closing or not self._closed)

    def _guarded(self, action: str, fn: Callable[..., None], *args: Any) -> None:
        """Call ``fn(*args)``; if it raises, stop tracking with one warning (never raise into the run)."""
        try:
            fn(*args)
        except Exception as exc:
            self.fail(f"{action} failed: {self._describe(exc)}")

    def fail(self, what: str) -> None:
        """Stop tracking for the rest of the command, saying ``what`` failed in one warning line."""
        if self.problem is not None:
            return
        self.problem = f"{self.name}: {what}"
        self._points.clear()
        stream = self._stream or sys.stderr
        print(f"cifar-bench: warning: {self.problem}; the run is recorded without it", file=stream, flush=True)
        with contextlib.suppress(Exception):  # the back end is already failing: nothing more to say
            self._abandon()


def _close_at_exit(ref: weakref.ref) -> None:
    tracker = ref()
    if tracker is not None:
        tracker.close()


# -- what a run is logged as ------------------------------------------------------------


def one_line(exc: BaseException, limit: int = PROBLEM_CHARS) -> str:
    """``Type: message`` on one line, at most ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def epoch_points(epoch: EpochResult) -> list[Point]:
    """An epoch's mean loss, train seconds and images/s, at the epoch's number."""
    now = time.time()
    images_per_s = epoch.images / epoch.train_s if epoch.train_s > 0 else 0.0
    return [
        Point("epoch_loss", epoch.mean_loss, epoch.epoch, now),
        Point("epoch_train_s", epoch.train_s, epoch.epoch, now),
        Point("epoch_images_per_s", images_per_s, epoch.epoch, now),
    ]


def recorded_epoch_points(record: RunRecord) -> list[Point]:
    """Each epoch's mean loss and train seconds as the record holds them: a run these hooks did not see
    start (a suite's data-parallel run or Ray task, told when its record came back)."""
    now = time.time()
    losses = [Point("epoch_loss", loss, i, now) for i, loss in enumerate(record.metrics.epoch_loss, 1)]
    return losses + [Point("epoch_train_s", s, i, now) for i, s in enumerate(record.timings.epoch_train_s, 1)]


def accuracy_points(record: RunRecord) -> list[Point]:
    """Test accuracy after each epoch (fraction, 0..1), when the run measured it (``--target-acc``)."""
    now, accuracy = time.time(), record.metrics.epoch_accuracy
    return [Point("epoch_accuracy", acc, i, now) for i, acc in enumerate(accuracy, 1) if acc is not None]


def final_metrics(record: RunRecord) -> dict[str, float]:
    """The record's final numbers by metric name: accuracy (fractions), seconds per phase, images/s, bytes."""
    m = record.metrics
    out: dict[str, float] = {}
    if m.test_accuracy is not None:
        out["test_accuracy"] = m.test_accuracy
    for name, acc in m.per_class_accuracy.items():
        if acc is not None:
            out[f"per_class_accuracy/{metric_name(name)}"] = acc
    if m.time_to_target_s is not None:
        out["time_to_target_s"] = m.time_to_target_s
    sections = {"timings": record.timings, "throughput": record.throughput, "memory": record.memory}
    for section, values in sections.items():
        for name, value in vars(values).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{section}/{name}"] = float(value)
    ratios = record.timings_ratio  # with --reference
    for name, value in (vars(ratios) if ratios is not None else {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"timings_ratio/{name}"] = float(value)
    return out


def final_points(record: RunRecord) -> list[Point]:
    """:func:`final_metrics` as points at the last epoch's number (0 for a run that trained no epoch)."""
    now, step = time.time(), len(record.metrics.epoch_loss)
    return [Point(key, value, step, now) for key, value in final_metrics(record).items()]


def metric_name(text: str) -> str:
    """``text`` as both trackers accept it in a metric name: letters, digits, ``_ - . /`` and spaces."""
    return re.sub(r"[^\w.\- /]", "_", text) or "_"


def run_params(run: RunInfo) -> dict[str, Any]:
    """What a run is known by when it starts: every resolved hyperparameter, the recipe, the data's size."""
    params = {"recipe": run.recipe, "dataset": run.dataset, "train_size": run.train_size,
              "test_size": run.test_size, "steps_per_epoch": run.steps_per_epoch}  # fmt: skip
    return {**params, **run.hyperparameters}  # a hyperparameter keeps its own name, whatever else is called so


def record_params(record: RunRecord) -> dict[str, Any]:
    """What the record adds: each component as ``KIND`` (its name) and ``KIND_plugin``, and the seed.

    Also the hyperparameters, recipe and dataset, for a run that ended without
    starting (a skipped device): callers keep whichever they logged first.
    """
    params: dict[str, Any] = {"recipe": record.recipe, "seed": record.seed}
    if record.dataset is not None:
        params["dataset"] = record.dataset.name
    for kind, ref in record.components.items():
        if kind not in ("recipe", "dataset"):
            params[kind] = ref.name
        params[f"{kind}_plugin"] = ref.plugin
    return {**params, **record.hyperparameters}


def machine(record: RunRecord) -> str:
    """The machine's label, as ``cifar-bench publish`` names it: the accelerator's model, else the CPU's."""
    cpu, device_name = record.environment.cpu or "unknown", record.environment.device_name or "unknown"
    return cpu if record.device == "cpu" or device_name in ("cpu", cpu) else f"{device_name} ({cpu})"


def record_tags(record: RunRecord) -> dict[str, str]:
    """How a run is found and grouped: workload key, device, variant, machine, commit, status (strings)."""
    env, workload = record.environment, record.workload
    variant = (workload.variant if workload is not None else None) or {
        "loader": record.loader, "precision": record.precision, "channels_last": record.channels_last,
        "compile": record.compile, "cuda_graph": record.cuda_graph, "deterministic": record.deterministic,
    }  # fmt: skip
    tags: dict[str, Any] = {
        "workload": workload.key if workload is not None else None,
        "device": record.device,
        "variant": ", ".join(f"{name}={text(value)}" for name, value in variant.items()),
        **{name: text(value) for name, value in variant.items()},
        "machine": machine(record),
        "cpu": env.cpu,
        "device_name": env.device_name,
        "hostname": env.hostname,
        "git_commit": env.git_commit,
        "torch": env.torch,
        "status": record.status,
        "error": record.error,
        "role": record.role,
        "suite_key": record.suite_key,
    }
    return {name: str(value) for name, value in tags.items() if value not in (None, "")}


def text(value: Any) -> str:
    """A parameter's value as text: strings as they are, anything else as JSON (``0.001``, ``true``, ``[1, 2]``)."""
    return value if isinstance(value, str) else json.dumps(value, default=str)
