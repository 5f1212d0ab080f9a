"""Log each run to MLflow: parameters, metrics with steps, tags, and the JSON record as an artifact.

``MlflowTracker(experiment=None)`` is an observer object (its methods are
the hooks; see ``_tracking.Tracker`` for the failure rule and the steps):

- **where**: ``MLFLOW_TRACKING_URI`` when set (a server, a database, a
  folder), else MLflow's own local default in the working folder. The
  experiment is named after the recipe unless ``experiment`` is given.
- **params**: the recipe, every resolved hyperparameter under its own name
  (``lr`` is ``0.001``), the data's name and sizes, the seed, and each
  component as ``KIND`` (``model`` is ``net``) and ``KIND_plugin``.
- **metrics**: ``running_loss`` and ``running_images_per_s`` at each
  progress event (global step), ``epoch_loss``, ``epoch_train_s``,
  ``epoch_images_per_s`` and ``epoch_accuracy`` per epoch (step: the
  epoch), and at the end ``test_accuracy``, ``per_class_accuracy/CLASS``,
  ``timings/PHASE_s``, ``throughput/train_img_s``, ``memory/...``.
- **tags**: ``workload`` (its key), ``device``, ``variant`` and each variant
  field, ``machine``, ``cpu``, ``device_name``, ``git_commit`` (also as
  MLflow's ``mlflow.source.git.commit``), ``status``, ``repeat``...
- **artifact**: ``record.json``, the record as cifar-bench writes it.
- **grouping**: a command's several runs in one experiment (repeats, a
  suite) are nested under one parent run, made when the second run starts;
  a command of one run makes one MLflow run and no parent.
- **status**: ``ok`` ends the MLflow run FINISHED, ``failed``/``diverged``
  FAILED, ``interrupted``/``skipped`` KILLED.

MLflow's HTTP client retries a failing request for minutes by default; for
its own calls this tracker bounds that (:data:`HTTP_LIMITS`, seconds in all
against a closed port) unless the user set those variables.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

from cifar_bench import RunInfo, RunRecord

from ._tracking import Point, Tracker, one_line, record_params, record_tags, run_params, text

#: MLflow's HTTP settings bounded while this tracker calls MLflow (each only where the user has not set it).
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",  # retries per request (MLflow's default, 7, backs off for minutes)
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # seconds; waits 0, then 2 s between tries (MLflow's: 2, an int)
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",  # seconds of random extra wait per retry (MLflow's: 1.0)
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",  # seconds to connect or to wait for an answer (MLflow's: 120)
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # no "View run at" lines on stdout, beside the results
}
#: After a failure, runs left open are marked failed with one quick try each.
ABANDON_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}

#: MLflow's limits per log_batch request (entities).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
#: Longest parameter and tag values MLflow stores, in characters (its own limits are 6000 and 8000).
MAX_VALUE_CHARS = 6000

#: Tags of an experiment this tracker makes: MLflow's UI then shows it as model training, not GenAI traces.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
#: cifar-bench status -> MLflow run status.
RUN_STATUS = {"ok": "FINISHED", "failed": "FAILED", "diverged": "FAILED", "interrupted": "KILLED", "skipped": "KILLED"}


class MlflowTracker(Tracker):
    """Each run as an MLflow run; several runs of one command under a parent run per experiment.

    :param experiment: the experiment's name; None: each run's recipe.
    :param tracking_uri: None: ``MLFLOW_TRACKING_URI``, else MLflow's local default.
    :param stream: where the one warning line goes (None: stderr).
    """

    name = "mlflow"

    def __init__(self, experiment: str | None = None, tracking_uri: str | None = None, stream=None) -> None:
        super().__init__(stream)
        self.experiment = experiment
        self.tracking_uri = tracking_uri  # resolved by MLflow when the client is made
        self.run_ids: dict[str, str] = {}  # cifar-bench run id -> MLflow run id, for every run logged
        self.parent_run_ids: dict[str, str] = {}  # experiment id -> the parent run of this command's runs there
        self._client: Any = None
        self._mlflow: Any = None
        self._experiments: dict[str, str] = {}  # experiment name -> id
        self._children: dict[str, list[str]] = {}  # experiment id -> MLflow run ids of this command, in order
        self._started_ms: dict[str, int] = {}  # MLflow run id -> its start (ms since the epoch)
        self._statuses: dict[str, str] = {}  # MLflow run id -> the status it ended with
        self._params: dict[str, set[str]] = {}  # MLflow run id -> parameter names logged
        if self.enabled:
            self._connect()

    # -- the client -------------------------------------------------------------------

    def _connect(self) -> None:
        """Import MLflow (here, at start-up, not in a run: it takes seconds) and make the client."""
        try:
            import mlflow
            from mlflow import MlflowClient
        except ImportError as exc:
            self.fail(f"not installed ({one_line(exc)}): pip install 'cifar-bench[mlflow]'")
            return
        self._mlflow = mlflow
        try:
            with bounded_http():
                self._client = MlflowClient(tracking_uri=self.tracking_uri)
            self.tracking_uri = self._client.tracking_uri
        except Exception as exc:
            self.fail(f"cannot use tracking URI {self.tracking_uri or '(default)'}: {self._describe(exc)}")

    def _describe(self, exc: Exception) -> str:
        """One line; a server that does not answer is named with the reason (refused, timed out)."""
        cause = _network_error(exc)
        if cause is not None:
            reason = re.findall(r"\[Errno -?\d+\] ([^'\")]+)", str(cause))
            why = reason[-1].strip() if reason else type(cause).__name__
            return f"cannot reach the tracking server at {self.tracking_uri} ({why})"
        return one_line(exc)

    # -- the hooks' work (each call under the failure rule: see Tracker._guarded) -----------

    def _open(self, run: RunInfo) -> None:
        with bounded_http():
            run_id = self._new_run(self.experiment or run.recipe, run.run_id, {"repeat": str(run.repeat),
                                   "device": run.device, "loader": run.loader})  # fmt: skip
            self._log_params(run_id, run_params(run))

    def _write(self, run: RunInfo, points: list[Point]) -> None:
        run_id = self.run_ids.get(run.run_id)
        if run_id is not None and points:
            with bounded_http():
                self._log_metrics(run_id, points)

    def _finish(self, run: RunInfo, record: RunRecord, points: list[Point]) -> None:
        with bounded_http():
            run_id = self.run_ids.get(record.run_id)
            if run_id is None:  # a run that ended before it started (a skipped device, a dataset that failed)
                run_id = self._new_run(self.experiment or record.recipe, record.run_id, {"repeat": str(run.repeat)})
            self._log_params(run_id, record_params(record))
            self._log_metrics(run_id, points)
            tags = record_tags(record)
            if "git_commit" in tags:
                tags["mlflow.source.git.commit"] = tags["git_commit"]  # MLflow's UI shows it as the source's
            self._log_texts(run_id, "tags", tags)
            self._client.log_dict(run_id, record.to_dict(), "record.json")
            status = RUN_STATUS.get(record.status, "FAILED")
            self._client.set_terminated(run_id, status)
            self._statuses[run_id] = status

    def _close(self) -> None:
        with bounded_http():
            for experiment_id, parent in self.parent_run_ids.items():
                statuses = [self._statuses.get(child, "KILLED") for child in self._children[experiment_id]]
                worst = next((s for s in ("FAILED", "KILLED") if s in statuses), "FINISHED")
                self._client.set_tag(parent, "runs", str(len(statuses)))
                self._client.set_terminated(parent, worst)

    def _abandon(self) -> None:
        # One quick try each (the server may be what failed): runs left RUNNING would look alive for ever.
        with bounded_http(ABANDON_LIMITS):
            open_runs = [r for r in [*self.run_ids.values(), *self.parent_run_ids.values()] if r not in self._statuses]
            for run_id in open_runs:
                with contextlib.suppress(Exception):
                    self._client.set_terminated(run_id, "FAILED")

    # -- runs, parents and batches ------------------------------------------------------

    def _experiment_id(self, name: str) -> str:
        """The experiment called ``name``, made if missing (another process may make it at the same moment)."""
        if name not in self._experiments:
            experiment = self._client.get_experiment_by_name(name)
            if experiment is None:
                try:
                    self._experiments[name] = self._client.create_experiment(name, tags=EXPERIMENT_TAGS)
                    return self._experiments[name]
                except self._mlflow.exceptions.MlflowException:
                    experiment = self._client.get_experiment_by_name(name)  # made meanwhile: use it
                    if experiment is None:
                        raise
            if experiment.lifecycle_stage == "deleted":
                raise RuntimeError(f"experiment {name!r} is deleted: restore it ('mlflow experiments restore') "
                                   "or log to another")  # fmt: skip
            self._experiments[name] = experiment.experiment_id
        return self._experiments[name]

    def _new_run(self, experiment: str, name: str, tags: dict[str, str]) -> str:
        """A new MLflow run called ``name``; from the second in an experiment on, all nest under a parent."""
        experiment_id = self._experiment_id(experiment)
        siblings = self._children.setdefault(experiment_id, [])
        tags = {"mlflow.source.name": "cifar-bench", "mlflow.source.type": "LOCAL", **tags}
        if siblings:
            tags["mlflow.parentRunId"] = self._parent(experiment_id)
        started = int(time.time() * 1000)
        run_id = self._client.create_run(experiment_id, start_time=started, tags=tags, run_name=name).info.run_id
        siblings.append(run_id)
        self.run_ids[name] = run_id
        self._started_ms[run_id] = started
        return run_id

    def _parent(self, experiment_id: str) -> str:
        """The parent run of this command's runs in the experiment; made (and the first run moved under it) once."""
        parent = self.parent_run_ids.get(experiment_id)
        if parent is None:
            siblings = self._children[experiment_id]
            first = next(name for name, run_id in self.run_ids.items() if run_id == siblings[0])
            command = re.sub(r"-[0-9a-f]{8}$", "", first)  # the first run's id less its random part: when, what
            parent = self._client.create_run(experiment_id, start_time=self._started_ms[siblings[0]],
                                             tags={"mlflow.source.name": "cifar-bench", "cifar_bench.parent": "true"},
                                             run_name=f"{command} (command)").info.run_id  # fmt: skip
            self.parent_run_ids[experiment_id] = parent
            for child in siblings:  # MLflow nests by this tag alone, so it can be set afterwards
                self._client.set_tag(child, "mlflow.parentRunId", parent)
        return parent

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Log the parameters not logged yet (MLflow refuses to change one)."""
        logged = self._params.setdefault(run_id, set())
        new = {key: text(value) for key, value in params.items() if key not in logged}
        self._log_texts(run_id, "params", new)
        logged.update(new)

    def _log_metrics(self, run_id: str, points: Sequence[Point]) -> None:
        Metric = self._mlflow.entities.Metric
        metrics = [Metric(p.key, float(p.value), int(p.wall_s * 1000), p.step) for p in points]
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            self._client.log_batch(run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])

    def _log_texts(self, run_id: str, field: str, values: dict[str, str]) -> None:
        """Log ``values`` as ``field`` ("params" or "tags") in batches of MLflow's size; long values cut short."""
        kind, limit = {"params": (self._mlflow.entities.Param, MAX_PARAMS_PER_BATCH),
                       "tags": (self._mlflow.entities.RunTag, MAX_TAGS_PER_BATCH)}[field]  # fmt: skip
        entities = [kind(key, value if len(value) <= MAX_VALUE_CHARS else value[: MAX_VALUE_CHARS - 3] + "...")
                    for key, value in values.items()]  # fmt: skip
        for start in range(0, len(entities), limit):
            self._client.log_batch(run_id, **{field: entities[start : start + limit]})


@contextlib.contextmanager
def bounded_http(limits: dict[str, str] = HTTP_LIMITS) -> Iterator[None]:
    """Set ``limits`` in the environment (MLflow reads them on each request) where the user has not; then undo.

    A variable the user set is theirs and is left alone; nothing outlives the
    block, so other MLflow use in the same process keeps MLflow's defaults.
    """
    added = [name for name in limits if name not in os.environ]
    os.environ.update({name: limits[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _network_error(exc: BaseException) -> BaseException | None:
    """The connection error or time-out behind ``exc`` (MLflow wraps requests' own), if it is one."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc).__name__ in ("ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "MaxRetryError"):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None
