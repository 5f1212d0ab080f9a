"""``cifar-bench suite FILE --executor ray``: a suite's runs as tasks on a Ray cluster.

Ray is an optional extra (``pip install -e ".[ray]"``), imported only when
this executor is asked for. How a suite runs on a cluster:

* **One task per run**, asking Ray for what the run needs: ``threads`` CPUs
  (1 when the suite sets none) for a run on the CPU, plus one GPU for a
  ``cuda`` run; a data-parallel run (``nproc = N``) asks for N times that on
  one node and starts torchrun there. A run no node of the cluster could
  hold is recorded as ``skipped`` with the reason, never left pending.
* **Data moves through Ray's object store**, not a shared filesystem: the
  driver decodes each dataset once (or reads its decoded-data cache) and
  puts its uint8 tensors in the store once; each worker process fetches
  them the first time a run needs them and keeps them for its later runs.
  (A data-parallel run's ranks read the data on their node themselves.)
* **Records come back to the driver**, where ``execute`` writes them atomically
  into its own results folder, so resuming works as with the local executor.
* **Faults.** A worker process that dies mid-run (killed, out of memory, its
  node lost) is run again by Ray up to ``--max-retries`` times, then the run
  is recorded as ``failed`` with the reason. A run's own failure (a bad
  recipe, a diverged loss) is recorded by the run itself and not retried.
  Ctrl-C on the driver cancels every outstanding task and exits 130, with
  every run that finished already written.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from statistics import mean
from typing import Any

from ..errors import UsageError, first_line
from ..results.schema import RunRecord
from ..training.build import build
from ..training.config import RunConfig
from ..training.data import load_tensors
from ..training.session import Session
from ..training.state import RunResult, info_from_record
from . import ray_worker
from .plan import Outcome, Plan, PlannedRun
from .suite import duration

INSTALL_HINT = 'pip install -e ".[ray]" (or pip install ray)'

#: Seconds between looks at the cluster while no run finishes (progress lines, Ctrl-C).
POLL_S = 1.0


def check(configs: Sequence[RunConfig]):
    """Ray itself, after refusing what makes the suite bad input here: Ray not installed, a device it cannot name."""
    ray = import_ray()
    for config in configs:
        request(config)  # cuda:N, say: a task takes whichever GPU Ray gives it
    return ray


def import_ray():
    """Ray, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True)
class Request:
    """What one run asks the cluster for, on a single node."""

    cpus: int
    gpus: int

    def __str__(self) -> str:
        gpus = f" and {_count(self.gpus, 'GPU')}" if self.gpus else ""
        return _count(self.cpus, "CPU") + gpus


def request(config: RunConfig) -> Request:
    """``threads`` CPUs per process (1 when unset), one GPU per process on CUDA; ``processes`` processes."""
    if config.device.startswith("cuda:"):
        raise UsageError(
            f"{config.recipe} on {config.device}: on a Ray cluster a run takes the GPU Ray gives it; "
            "use devices = 'cuda'"
        )
    gpus = config.processes if config.device == "cuda" else 0
    return Request(cpus=config.processes * (config.threads or 1), gpus=gpus)


def unplaceable_reason(need: Request, nodes: Sequence[dict[str, float]]) -> str | None:
    """Why no node of the cluster can hold ``need`` (``nodes``: each alive node's total resources), or None."""
    for node in nodes:
        if node.get("CPU", 0) >= need.cpus and node.get("GPU", 0) >= need.gpus:
            return None
    sizes = sorted({(int(n.get("CPU", 0)), int(n.get("GPU", 0))) for n in nodes}, reverse=True)
    have = "; ".join(f"{_count(c, 'CPU')}, {_count(g, 'GPU')}" for c, g in sizes) or "no nodes"
    return f"no node of the Ray cluster has {need} (its nodes: {have})"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


# -- the driver -----------------------------------------------------------------------------


def connect(ray, address: str | None) -> bool:
    """Connect to the cluster at ``address`` (or start a local instance); True when this call started Ray."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "a new local instance"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot reach the Ray cluster at {where}: {first}: check --address") from None
    return True


class RayCluster:
    """A backend: every planned run as a Ray task at once; outcomes come back as runs finish.

    ``name(planned)`` says how progress lines name a run; ``total`` is how many runs the suite lists (done
    ones included), for the ETA.
    """

    def __init__(self, ray, session: Session, plugins: Sequence[str], *, autoload: bool, retries: int,
                 name: Callable[[PlannedRun], str]) -> None:  # fmt: skip
        self.ray, self.session, self.plugins, self.autoload, self.retries = (
            ray,
            session,
            list(plugins),
            autoload,
            retries,
        )
        self.name = name
        self.todo, self.finished, self.failed = 0, 0, 0
        self.started: set[str] = set()
        self.seconds: list[float] = []  # of each run that ran
        self.slots = 1  # the most runs seen running at once

    def outcomes(self, plan: Plan) -> Iterator[Outcome]:
        ray = self.ray
        self.todo = len(plan.runs)
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        total = sum(node.get("CPU", 0) for node in nodes), sum(node.get("GPU", 0) for node in nodes)
        print(f"ray: {_count(len(nodes), 'node')}, {total[0]:g} CPUs, {total[1]:g} GPUs; a run whose worker dies is "
              f"tried again up to {self.retries} more time(s)", flush=True)  # fmt: skip
        placeable = []
        for planned in plan.runs:
            reason = unplaceable_reason(request(planned.config), nodes)
            if reason is None:
                placeable.append(planned)
            else:
                yield self._outcome(planned, self.session.unstarted(planned.config, "skipped", reason), ran=False)
        tracker = ray.remote(num_cpus=0)(ray_worker.tracker_class()).remote()
        pending: dict[Any, PlannedRun] = {}
        try:
            for planned, failure in self._submit(placeable, tracker, pending):
                yield self._outcome(planned, failure, ran=False)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    planned = pending.pop(ref)
                    yield self._outcome(planned, self._collect(ref, planned))
                self._note_started(tracker, pending)
        except KeyboardInterrupt:
            yield from self._interrupt(pending)
        finally:
            ray.kill(tracker)

    def _submit(self, runs: Sequence[PlannedRun], tracker, pending: dict[Any, PlannedRun]):
        """One task per run, in the suite's order (Ray starts them in that order as room frees up); yields the
        runs whose data could not be read, each with its failed record."""
        data, errors = self._ship_data(runs)
        task = self.ray.remote(ray_worker.execute)
        for planned in runs:
            config = planned.config
            if _key(planned) in errors:
                yield planned, self.session.unstarted(config, "failed", errors[_key(planned)])
                continue
            need = request(config)
            name = f"cifar-bench {config.recipe} {config.device} seed {config.seed}"
            options = {"num_cpus": need.cpus, "num_gpus": need.gpus, "max_retries": self.retries,
                       "retry_exceptions": False, "name": name}  # fmt: skip
            spec = {"run": planned.to_dict(), "plugins": self.plugins, "autoload": self.autoload,
                    "data": data.get(_key(planned))}  # fmt: skip
            pending[task.options(**options).remote(spec, tracker)] = planned

    # -- data ---------------------------------------------------------------------------

    def _ship_data(self, runs: Sequence[PlannedRun]) -> tuple[dict[str, dict], dict[str, str]]:
        """Each dataset the runs read, decoded once here and put in the object store once.

        Returns, per run key, what its task needs to find the data, and the
        error of each run whose data could not be read (recorded as failed, as
        the local executor does).
        """
        shipped: dict[tuple, dict | str] = {}
        data: dict[str, dict] = {}
        errors: dict[str, str] = {}
        for planned in runs:
            config = planned.config
            if config.processes > 1:
                continue  # its ranks read the data on their node
            try:
                entry = self.session.components(self.session.registry.recipe(config.recipe), config)["dataset"]
            except UsageError as exc:
                errors[_key(planned)] = str(exc)
                continue
            key = (entry.name, config.source)
            if key not in shipped:
                try:
                    shipped[key] = self._put(entry, config)
                except UsageError as exc:  # data missing or unreadable: its runs fail, the others go on
                    shipped[key] = str(exc)
                except Exception as exc:  # a dataset plugin that broke: as a run records it, in one line
                    shipped[key] = f"{type(exc).__name__}: {first_line(exc)}"
            if isinstance(shipped[key], str):
                errors[_key(planned)] = shipped[key]
            else:
                data[_key(planned)] = shipped[key]
        return data, errors

    def _put(self, entry, config) -> dict:
        start = time.perf_counter()
        dataset = build(entry, config.source)  # as the runner builds it: one check, one message
        train, test = load_tensors(dataset, config.cache_dir)[:2]
        payload = {
            "name": dataset.name,
            "classes": list(dataset.classes),
            "fingerprint": dataset.fingerprint,
            "synthetic": dataset.synthetic,
            "source": dataset.source,
            "splits": {split: (s.images.numpy(), s.labels.numpy()) for split, s in (("train", train), ("test", test))},
        }
        ref = self.ray.put(payload)
        size = sum(s.images.nbytes + s.labels.nbytes for s in (train, test)) / 1e6
        print(f"data: {dataset.name} ({len(train):,} train / {len(test):,} test images, {size:,.1f} MB) decoded "
              f"in {time.perf_counter() - start:.1f} s, in the object store once", flush=True)  # fmt: skip
        # In a list, so that Ray hands the task the reference and the worker fetches it only if it lacks the data.
        return {"ref": [ref], "id": ref.hex(), "entry": entry.name, "source": config.source}

    # -- records and progress ----------------------------------------------------------

    def _collect(self, ref, planned: PlannedRun) -> RunResult:
        """A finished task's record (a run that failed before it could train there gets its record made here)."""
        ray, config = self.ray, planned.config
        try:
            data = ray.get(ref)
            if "unstarted" in data:
                return self.session.unstarted(config, "failed", data["unstarted"], data["seconds"])
            record = RunRecord.from_dict(data)
            return RunResult(record, info_from_record(record))
        except ray.exceptions.RayTaskError as exc:  # the task itself broke (a run's own failure is in its record)
            why = f"the task failed: {first_line(exc.cause or exc)}"
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError,
                ray.exceptions.LocalRayletDiedError) as exc:  # fmt: skip
            tries = "its one try" if self.retries == 0 else f"each of {self.retries + 1} tries"
            why = f"its worker died ({type(exc).__name__}) in {tries} (--max-retries {self.retries})"
        except ray.exceptions.RayError as exc:
            why = f"Ray: {type(exc).__name__}: {first_line(exc)}"
        return self.session.unstarted(config, "failed", why)

    def _outcome(self, planned: PlannedRun, result: RunResult, *, ran: bool = True) -> Outcome:
        """The run's progress line, and its outcome for ``execute`` to store on this machine."""
        record = result.record
        self.finished += 1
        if ran:
            self.seconds.append(record.timings.total_s)
        self.failed += record.status in ("failed", "diverged")
        self.started.discard(_key(planned))
        what = record.status if record.status == "ok" else f"{record.status}: {record.error}"
        print(f"{self.name(planned)}: {what}, {record.timings.total_s:.1f} s ({self._counts()})", flush=True)
        return Outcome(planned, [result])

    def _note_started(self, tracker, pending: dict[Any, PlannedRun]) -> None:
        try:
            started = self.ray.get(tracker.snapshot.remote(), timeout=10)
        except self.ray.exceptions.RayError:
            return  # progress is a courtesy: never let it stop a suite
        waiting = {_key(planned): planned for planned in pending.values()}
        for key, node in started.items():
            if key in waiting and key not in self.started:
                self.started.add(key)
                print(f"{self.name(waiting[key])}: running on {node} ({self._counts()})", flush=True)

    def _counts(self) -> str:
        left = self.todo - self.finished
        running = len(self.started)
        self.slots = max(self.slots, running)
        # Runs still to go, at the mean length of those that ran, as many at once as the cluster has run so far.
        # (Not the wall time so far: that includes starting the workers, which later runs do not pay again.)
        eta = f"; about {duration(mean(self.seconds) * left / self.slots)} left" if self.seconds and left else ""
        return f"{self.finished} done, {running} running, {left - running} pending, {self.failed} failed{eta}"

    def _interrupt(self, pending: dict[Any, PlannedRun]) -> Iterator[Outcome]:
        """Ctrl-C: keep what already finished, cancel the rest, and end the plan as interrupted."""
        ray = self.ray
        if pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            for ref in ready:
                planned = pending.pop(ref)
                yield self._outcome(planned, self._collect(ref, planned))
        for ref in pending:
            ray.cancel(ref, force=True)
        print(f"interrupted: cancelled {_count(len(pending), 'run')} still running or pending", flush=True)
        yield Outcome(None, [])  # the plan was stopped


def _key(planned: PlannedRun) -> str:
    """What names a run among a suite's (its suite key)."""
    return planned.config.suite_key or f"{planned.config.recipe}-{planned.config.device}-{planned.config.seed}"
