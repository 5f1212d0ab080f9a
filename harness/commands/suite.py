"""``cifar-bench suite FILE``: many runs from one TOML file, in order, resumable (see ``execution/suite.py``)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError, warn
from .arguments import non_negative_int, tracking_flags

#: Where a suite's runs run: ``local`` on this machine; ``ray`` as tasks on a Ray cluster.
EXECUTORS = ("local", "ray")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="the suite file (see docs/distributed-and-suites.md)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and which are done; run nothing")
    parser.add_argument("--results-dir", type=Path, help="where records go [the file's results_dir, or results/]")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or loss log within runs")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: each run in turn, here [default]; ray: as tasks on a Ray cluster")  # fmt: skip
    parser.add_argument("--address", help="with --executor ray: the cluster's head (HOST:PORT, ray://..., auto) "
                        "[RAY_ADDRESS, else a Ray instance started for this suite]")  # fmt: skip
    parser.add_argument("--max-retries", type=non_negative_int, metavar="N",
                        help="with --executor ray: runs again a run whose worker died, up to N times [1]")  # fmt: skip
    tracking_flags(parser)  # --track and --mlflow-experiment: given, they replace the file's track


def cmd_suite(args: argparse.Namespace) -> int:
    from ..execution import suite as suites
    from ..execution.suite import duration
    from ..results.store import prepare_results_dir
    from ..training.session import Session

    if args.executor != "ray" and (args.address is not None or args.max_retries is not None):
        raise UsageError("--address and --max-retries are for --executor ray: add it, or drop them")
    suite = suites.load(args.file)
    session = Session.load([*args.plugins_global, *args.plugins_sub])
    suites.validate(suite, session)
    track = _track(args, suite, session)
    results_dir = args.results_dir or suite.results_dir or Path("results")
    labels = suites.settings_labels(suite.runs)
    keys = [run.key for run in suite.runs]
    before = suites.records_by_key(results_dir, set(keys), report=warn)
    todo = [run for run in suite.runs if not suites.done(before.get(run.key, []))]
    extra = f"; {suite.duplicates} listed twice, run once" if suite.duplicates else ""
    print(f"suite {suite.name}: {len(suite.runs)} runs, {len(suite.runs) - len(todo)} done before, "
          f"{len(todo)} to run; records in {results_dir}{extra}")  # fmt: skip
    if args.dry_run:
        print(_dry_run(suite, labels, before))
        return 0
    if args.executor == "ray":  # an optional extra: Ray missing, or a run it cannot name, before anything is touched
        from ..execution import ray_cluster

        ray_cluster.check([run.config() for run in todo])
    prepare_results_dir(results_dir)  # a folder that cannot take records is refused before the first run
    start = time.perf_counter()
    interrupted = _execute(args, suite, labels, todo, session, results_dir, track)
    after = suites.records_by_key(results_dir, set(keys))
    table = [(suites.shown(after[key]), label) for key, label in zip(keys, labels, strict=True) if key in after]
    print(f"suite {suite.name}: {sum(suites.done(after.get(k, [])) for k in keys)} of {len(keys)} runs ok, "
          f"{duration(time.perf_counter() - start)} this time")  # fmt: skip
    if table:
        from ..results.report import run_table

        settings = [label for _, label in table] if any(labels) else None
        print(run_table([record for record, _ in table], settings))
    if interrupted:
        return 130
    return 1 if any(record.get("status") in ("failed", "diverged") for record, _ in table) else 0


def _track(args, suite, session) -> list:
    """The trackers asked for: the command line's ``--track``, else the file's; an unknown one is exit code 2."""
    from ..execution import tracking

    experiment = args.mlflow_experiment or (None if args.track else suite.mlflow_experiment)
    track = tracking.parse(args.track or suite.track, experiment)
    tracking.check(session.registry, track)
    return track


def _execute(args, suite, labels, todo, session, results_dir: Path, track) -> bool:
    """The suite's runs still to make, with the chosen executor and trackers; True when Ctrl-C stopped them."""
    from ..execution.tracking import Trackers

    with Trackers.start(session, track) as trackers:  # closed after the last run, however the suite ends
        return _run_plan(args, suite, labels, todo, session, results_dir, trackers)


def _run_plan(args, suite, labels, todo, session, results_dir: Path, trackers) -> bool:
    import os

    from ..console import Console
    from ..execution import suite as suites
    from ..execution.inprocess import InProcess
    from ..execution.local import Local
    from ..execution.plan import execute
    from ..execution.torchrun import Torchrun
    from ..hooks.manager import AUTOLOAD_ENV, register_inline

    plugins = [*args.plugins_global, *args.plugins_sub]
    autoload = os.environ.get(AUTOLOAD_ENV, "") in ("", "0")
    plan = suites.plan(todo, results_dir)
    names = {run.key: f"[{i}/{len(suite.runs)}] {suites.run_name(run, label)}"
             for i, (run, label) in enumerate(zip(suite.runs, labels, strict=True), 1)}  # fmt: skip
    if args.executor == "ray":
        from ..execution import ray_cluster

        ray = ray_cluster.import_ray()
        started = ray_cluster.connect(ray, args.address)
        retries = 1 if args.max_retries is None else args.max_retries
        try:
            backend = ray_cluster.RayCluster(ray, session, plugins, autoload=autoload, retries=retries,
                                             name=lambda planned: names[planned.config.suite_key])  # fmt: skip
            return execute(plan, backend, session, written=_record_line(args.quiet, trackers)).interrupted
        finally:
            if started:
                ray.shutdown()
    register_inline(session.plugins, Console(progress=not args.quiet), "console")
    progress = _Progress(suite.runs, todo, names)
    backend = Local(InProcess(session), Torchrun(session, plugins, autoload=autoload), announce=progress.announce)
    done = execute(plan, backend, session, written=_record_line(False, trackers))
    progress.finish()
    return done.interrupted


def _record_line(quiet: bool, trackers=None):
    def written(result, path) -> None:
        if trackers is not None:
            trackers.tell(result)  # a data-parallel run's record, finished by its rank 0: the trackers were not told
        if not quiet:
            print(f"record: {path}")

    return written


class _Progress:
    """The local executor's lines: ``[i/n] name: running (k to run, about T left)``, or ``done before, skipped``."""

    def __init__(self, runs: Sequence, todo: Sequence, names: Mapping[str, str]) -> None:
        self.runs, self.todo, self.names = list(runs), {run.key for run in todo}, names
        self.position, self.ran, self.start = 0, 0, time.perf_counter()

    def announce(self, planned) -> None:
        from ..execution.suite import duration

        key = planned.config.suite_key
        self._skip_done(until=key)
        left = len(self.todo) - self.ran
        eta = f", about {duration((time.perf_counter() - self.start) / self.ran * left)} left" if self.ran else ""
        print(f"{self.names[key]}: running ({left} to run{eta})", flush=True)
        self.ran += 1
        self.position += 1

    def finish(self) -> None:
        self._skip_done(until=None)

    def _skip_done(self, until: str | None) -> None:
        while self.position < len(self.runs) and self.runs[self.position].key != until:
            run = self.runs[self.position]
            if run.key not in self.todo:
                print(f"{self.names[run.key]}: done before, skipped")
            self.position += 1


def _dry_run(suite, labels: Sequence[str], before: Mapping[str, list]) -> str:
    from tabulate import tabulate

    rows = [{"#": i, "state": _state(before.get(run.key, [])), "recipe": run.recipe, "device": run.device,
             "variant": run.variant_label, "seed": run.seed, "setting": label, "key": run.key}
            for i, (run, label) in enumerate(zip(suite.runs, labels, strict=True), 1)]  # fmt: skip
    return tabulate(rows, headers="keys", tablefmt="simple", disable_numparse=True)


def _state(records: Sequence[Mapping[str, Any]]) -> str:
    if any(r.get("status") == "ok" for r in records):
        return "done"
    return f"to run (last: {records[-1].get('status')})" if records else "to run"
