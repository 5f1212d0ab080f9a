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
* **Records come back to the driver**, which writes them atomically into
  its own results folder, so resuming works as with the local executor.
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
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import distributed, manager
from .components import Dataset
from .data import TensorSplit, load_tensors
from .errors import UsageError, first_line
from .records import RunRecord
from .runner import build
from .suite import Suite, SuiteRun, failed_record, record_here, records_by_key, run_name

INSTALL_HINT = 'pip install -e ".[ray]" (or pip install ray)'

#: Seconds between looks at the cluster while no run finishes (progress lines, Ctrl-C).
POLL_S = 1.0


def check(todo: Sequence[SuiteRun]):
    """Ray itself, after refusing what makes the suite bad input here: Ray not installed, a device it cannot name."""
    ray = import_ray()
    for run in todo:
        request(run)  # cuda:N, say: a task takes whichever GPU Ray gives it
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


def request(run: SuiteRun) -> Request:
    """``threads`` CPUs per process (1 when unset), one GPU per process on CUDA; ``nproc`` processes."""
    if run.device.startswith("cuda:"):
        raise UsageError(
            f"{run.recipe} on {run.device}: on a Ray cluster a run takes the GPU Ray gives it; use devices = 'cuda'"
        )
    processes = run.options.get("nproc", 1)
    gpus = processes if run.device == "cuda" else 0
    return Request(cpus=processes * run.options.get("threads", 1), gpus=gpus)


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


def run_suite(suite: Suite, labels: Sequence[str], todo: Sequence[SuiteRun], args, session, plugin_args,
              results_dir: Path) -> str:  # fmt: skip
    """Run ``todo`` on the cluster at ``args.address``; records go to ``results_dir``. Returns ``interrupted``
    when Ctrl-C stopped it, else the status of the last run to finish."""
    ray = check(todo)
    started_here = not ray.is_initialized()
    if started_here:
        _connect(ray, args.address)
    try:
        driver = _Driver(ray, suite, labels, todo, args, session, results_dir)
        return driver.run()
    finally:
        if started_here:
            ray.shutdown()


def _connect(ray, address: str | None) -> None:
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "a new local instance"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot reach the Ray cluster at {where}: {first}: check --address") from None


class _Driver:
    """Submits the runs, writes each record as it comes back, and says how the suite is getting on."""

    def __init__(self, ray, suite: Suite, labels, todo, args, session, results_dir: Path) -> None:
        self.ray, self.suite, self.args, self.session, self.results_dir = ray, suite, args, session, results_dir
        self.names = {run.key: f"[{i}/{len(suite.runs)}] {run_name(run, label)}"
                      for i, (run, label) in enumerate(zip(suite.runs, labels, strict=True), 1)}  # fmt: skip
        self.todo = list(todo)
        self.plugins = [*args.plugins_global, *args.plugins_sub]
        self.autoload = os.environ.get(manager.AUTOLOAD_ENV, "") in ("", "0")
        self.retries = 1 if args.max_retries is None else args.max_retries
        self.finished, self.failed, self.started = 0, 0, set()
        self.seconds: list[float] = []  # of each run that ran
        self.slots, self.status = 1, "ok"  # the most runs seen running at once; the last status

    def run(self) -> str:
        ray = self.ray
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        total = sum(node.get("CPU", 0) for node in nodes), sum(node.get("GPU", 0) for node in nodes)
        print(f"ray: {_count(len(nodes), 'node')}, {total[0]:g} CPUs, {total[1]:g} GPUs; a run whose worker dies is "
              f"tried again up to {self.retries} more time(s)", flush=True)  # fmt: skip
        placeable = []
        for run in self.todo:
            reason = unplaceable_reason(request(run), nodes)
            if reason is None:
                placeable.append(run)
            else:
                self._write(run, _skipped(run, reason, self.session).to_dict(), ran=False)
        tracker = ray.remote(num_cpus=0)(_tracker_class()).remote()
        pending: dict[Any, SuiteRun] = {}
        try:
            self._submit(placeable, tracker, pending)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    self._collect(ref, pending.pop(ref))
                self._note_started(tracker, pending)
        except KeyboardInterrupt:
            self._interrupt(pending)
            return "interrupted"
        finally:
            ray.kill(tracker)
        return self.status

    def _submit(self, runs: Sequence[SuiteRun], tracker, pending: dict[Any, SuiteRun]) -> None:
        """One task per run, in the suite's order (Ray starts them in that order as room frees up)."""
        data, errors = self._ship_data(runs)
        task = self.ray.remote(_execute)
        for run in runs:
            if run.key in errors:
                self._write(run, failed_record(run, errors[run.key], 0.0, self.session).to_dict(), ran=False)
                continue
            need = request(run)
            name = f"cifar-bench {run.recipe} {run.device} seed {run.seed}"
            options = {"num_cpus": need.cpus, "num_gpus": need.gpus, "max_retries": self.retries,
                       "retry_exceptions": False, "name": name}  # fmt: skip
            spec = {"run": run, "plugins": self.plugins, "autoload": self.autoload, "data": data.get(run.key)}
            pending[task.options(**options).remote(spec, tracker)] = run

    # -- data ---------------------------------------------------------------------------

    def _ship_data(self, runs: Sequence[SuiteRun]) -> tuple[dict[str, dict], dict[str, str]]:
        """Each dataset the runs read, decoded once here and put in the object store once.

        Returns, per run key, what its task needs to find the data, and the
        error of each run whose data could not be read (recorded as failed, as
        the local executor does).
        """
        shipped: dict[tuple, dict | str] = {}
        data: dict[str, dict] = {}
        errors: dict[str, str] = {}
        for run in runs:
            if "nproc" in run.options:
                continue  # its ranks read the data on their node
            config = run.config()
            try:
                entry = self.session.components(self.session.registry.recipe(run.recipe), config)["dataset"]
            except UsageError as exc:
                errors[run.key] = str(exc)
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
                errors[run.key] = shipped[key]
            else:
                data[run.key] = shipped[key]
        return data, errors

    def _put(self, entry, config) -> dict:
        start = time.perf_counter()
        dataset = build(entry, Dataset, config.source)  # as the runner builds it: one check, one message
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

    def _collect(self, ref, run: SuiteRun) -> None:
        ray = self.ray
        try:
            data = ray.get(ref)
            if "unstarted" in data:  # the run failed before it could train there: its record is made here
                data = failed_record(run, data["unstarted"], data["seconds"], self.session).to_dict()
        except ray.exceptions.RayTaskError as exc:  # the task itself broke (a run's own failure is in its record)
            data = failed_record(run, f"the task failed: {first_line(exc.cause or exc)}", 0.0, self.session).to_dict()
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError,
                ray.exceptions.LocalRayletDiedError) as exc:  # fmt: skip
            tries = "its one try" if self.retries == 0 else f"each of {self.retries + 1} tries"
            why = f"its worker died ({type(exc).__name__}) in {tries} (--max-retries {self.retries})"
            data = failed_record(run, why, 0.0, self.session).to_dict()
        except ray.exceptions.RayError as exc:
            data = failed_record(run, f"Ray: {type(exc).__name__}: {first_line(exc)}", 0.0, self.session).to_dict()
        self._write(run, data)

    def _write(self, run: SuiteRun, data: dict[str, Any], *, ran: bool = True) -> None:
        # Written here, on the driver, the one way every record is: shown to run_end observers, then stored.
        path = self.session.finish(RunRecord.from_dict(data), self.results_dir)
        status = str(data.get("status"))
        self.finished += 1
        seconds = (data.get("timings") or {}).get("total_s") or 0.0
        if ran:
            self.seconds.append(seconds)
        self.failed += status in ("failed", "diverged")
        self.status = status
        self.started.discard(run.key)
        what = status if status == "ok" else f"{status}: {data.get('error')}"
        print(f"{self.names[run.key]}: {what}, {seconds:.1f} s ({self._counts()})", flush=True)
        if not self.args.quiet:
            print(f"record: {path}")

    def _note_started(self, tracker, pending: dict[Any, SuiteRun]) -> None:
        try:
            started = self.ray.get(tracker.snapshot.remote(), timeout=10)
        except self.ray.exceptions.RayError:
            return  # progress is a courtesy: never let it stop a suite
        waiting = {run.key: run for run in pending.values()}
        for key, node in started.items():
            if key in waiting and key not in self.started:
                self.started.add(key)
                print(f"{self.names[key]}: running on {node} ({self._counts()})", flush=True)

    def _counts(self) -> str:
        left = len(self.todo) - self.finished
        running = len(self.started)
        self.slots = max(self.slots, running)
        # Runs still to go, at the mean length of those that ran, as many at once as the cluster has run so far.
        # (Not the wall time so far: that includes starting the workers, which later runs do not pay again.)
        eta = f"; about {_duration(mean(self.seconds) * left / self.slots)} left" if self.seconds and left else ""
        return f"{self.finished} done, {running} running, {left - running} pending, {self.failed} failed{eta}"

    def _interrupt(self, pending: dict[Any, SuiteRun]) -> None:
        """Ctrl-C: keep what already finished, cancel the rest."""
        ray = self.ray
        if pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            for ref in ready:
                self._collect(ref, pending.pop(ref))
        for ref in pending:
            ray.cancel(ref, force=True)
        print(f"interrupted: cancelled {_count(len(pending), 'run')} still running or pending", flush=True)


def _skipped(run: SuiteRun, reason: str, session):
    record = session.unstarted(run.config(), "skipped", reason)
    record.suite_key = run.key
    return record


def _duration(seconds: float) -> str:
    from .suite import _duration as duration

    return duration(seconds)


def _tracker_class() -> type:
    """Which runs have started, and where: tasks tell it as they start, the driver asks (a Ray actor).

    Made inside a function so that Ray ships the class itself: the actor's
    process then needs only Ray, not cifar-bench and torch, and starts fast.
    """

    class Tracker:
        def __init__(self) -> None:
            self.started: dict[str, str] = {}

        def start(self, key: str, node: str) -> None:
            self.started[key] = node

        def snapshot(self) -> dict[str, str]:
            return dict(self.started)

    return Tracker


# -- on a worker ------------------------------------------------------------------------------

#: A worker process's state, kept from task to task: sessions by plugins, decoded data by object id.
_sessions: dict[tuple, Any] = {}
_decoded: dict[str, tuple[Dataset, TensorSplit, TensorSplit]] = {}


def _execute(spec: dict[str, Any], tracker) -> dict[str, Any]:
    """One run on a worker; returns its record as a dict. A run that fails is a record, not an exception."""
    import ray

    run: SuiteRun = spec["run"]
    tracker.start.remote(run.key, ray.util.get_node_ip_address())
    start = time.perf_counter()
    try:
        if "nproc" in run.options:
            return _execute_distributed(run, spec)
        session = _session(tuple(spec["plugins"]), spec["autoload"])
        data = spec["data"]
        if data is not None:
            if data["id"] not in _decoded:
                _decoded[data["id"]] = _unpack(ray.get(data["ref"][0]))
            session.provide_data(data["entry"], data["source"], *_decoded[data["id"]])
        torch.set_num_threads(run.options.get("threads", 1))
        return record_here(run, session).to_dict()
    except UsageError as exc:  # a plugin this node lacks, say: the run fails, the suite goes on
        return {"unstarted": str(exc), "seconds": time.perf_counter() - start}


def _session(plugins: tuple[str, ...], autoload: bool):
    from .registry import collect
    from .runner import Session

    if (plugins, autoload) not in _sessions:
        loaded = manager.build(plugins, autoload=autoload)
        loaded.check_broken()
        _sessions[(plugins, autoload)] = Session(loaded, collect(loaded))
    return _sessions[(plugins, autoload)]


def _execute_distributed(run: SuiteRun, spec: dict[str, Any]) -> dict[str, Any]:
    """A data-parallel run: torchrun on this node, its record read back from a folder of this node's."""
    start = time.perf_counter()
    if not spec["autoload"]:
        os.environ[manager.AUTOLOAD_ENV] = "1"  # the ranks load the plugins the driver loaded
    with tempfile.TemporaryDirectory(prefix="cifar-bench-ray-") as folder:
        argv = [*_plugin_flags(spec["plugins"]), *run.argv(Path(folder), quiet=True)]
        with _stdout_to_null():  # rank 0's own lines would reach the driver's terminal through Ray's log forwarding
            code, error = distributed.launch(argv, run.options["nproc"])
        written = records_by_key(Path(folder), {run.key}).get(run.key, [])
        if written:
            return written[-1]
    message = error or f"exited with code {code} and wrote no record"
    return {"unstarted": message, "seconds": time.perf_counter() - start}


@contextmanager
def _stdout_to_null() -> Iterator[None]:
    """This process's standard output, and so its children's, to /dev/null for a while."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _plugin_flags(plugins: Sequence[str]) -> list[str]:
    return [arg for plugin in plugins for arg in ("-p", plugin)]


def _unpack(payload: dict[str, Any]) -> tuple[Dataset, TensorSplit, TensorSplit]:
    """The driver's decoded data as this process's own tensors (the store's arrays are read-only)."""
    train, test = (TensorSplit(torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y)))
                   for x, y in (payload["splits"]["train"], payload["splits"]["test"]))  # fmt: skip
    dataset = Dataset(
        name=payload["name"],
        classes=payload["classes"],
        train=DecodedImages(train),
        test=DecodedImages(test),
        fingerprint=payload["fingerprint"],
        synthetic=payload["synthetic"],
        source=payload["source"],
    )
    return dataset, train, test


class DecodedImages(torch.utils.data.Dataset):
    """``(PIL image, label)`` pairs from a decoded split: what the ``dataloader`` loader reads on a worker.

    The same pixels the dataset's own images decode to, so both loaders give
    the same results on a worker as on the driver's machine.
    """

    def __init__(self, split: TensorSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        return Image.fromarray(self.split.images[i].permute(1, 2, 0).numpy()), int(self.split.labels[i])
