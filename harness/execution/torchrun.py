"""Starting a data-parallel run's ranks under torchrun, and what a failing rank does.

``run --nproc N`` (and a suite's or a Ray task's data-parallel run) writes the plan of runs to a file and
starts N ranks of ``python -m cifar_bench.commands.rank PLAN`` under torchrun (:func:`launch`); each rank
reads the serialized RunConfigs, joins the process group (``training.world.join``) and runs them, rank 0
writing the records. A rank that raises ends its process at once with a non-zero code; torchrun then stops
the other ranks. Each failing rank also leaves its error in a folder the launcher reads, so the command
ends with the first rank's error as one line (``python -m cifar_bench.execution.torchrun`` is torchrun,
minus its traceback on a failed rank).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ObserverError, RunFailed, UsageError, first_line
from ..results.schema import RunRecord
from ..results.store import read_record
from ..training.session import Session
from ..training.state import RunResult, info_from_record
from ..training.world import DEFAULT_TIMEOUT_S, World, join, leave
from .plan import Outcome, Plan, PlannedRun

#: Set by :func:`launch`: the folder where a failing rank leaves its error for the launcher.
ERROR_DIR_ENV = "CIFAR_BENCH_RANK_ERRORS"

#: What each rank runs: reads the plan file, joins the others, runs the plan (a module, not a command name,
#: so that a rank's start-up builds no command line).
RANK_MODULE = "cifar_bench.commands.rank"


# -- failures -------------------------------------------------------------------------


def rank_failure(world: World, exc: BaseException, *, traceback: bool) -> BaseException:
    """What a failing rank raises: at once, so torchrun stops the others.

    Under :func:`launch` the error goes to the launcher's folder and the rank
    exits quietly (the launcher prints the first rank's error, once); under a
    torchrun of the user's own, it is printed as this rank's one line.
    """
    # Our own errors say what went wrong (and which plugin) in their message; others need their type.
    message = str(exc) if isinstance(exc, (UsageError, ObserverError)) else f"{type(exc).__name__}: {first_line(exc)}"
    folder = os.environ.get(ERROR_DIR_ENV)
    if folder:
        _write_error(Path(folder), world.rank, world.size, message, 2 if isinstance(exc, UsageError) else 1)
        if not traceback:
            return SystemExit(2 if isinstance(exc, UsageError) else 1)
    if isinstance(exc, UsageError):
        return exc
    return RunFailed(f"rank {world.rank} of {world.size}: {message}")


def _write_error(folder: Path, rank: int, size: int, message: str, code: int, when: float | None = None) -> None:
    path = folder / f"rank-{rank}.json"
    if path.exists():
        return  # the rank's own error beats torchrun's summary of it
    text = json.dumps({"rank": rank, "size": size, "message": message, "code": code, "time": when or time.time()})
    path.write_text(text, encoding="utf-8")


def first_error(folder: Path) -> tuple[str, int] | None:
    """The earliest rank error in ``folder`` as ``(one line, exit code)``: the cause, not its echoes.

    When one rank raises, the others may fail a moment later on the broken
    connection; the earliest error is the one that explains the rest.
    """
    errors = []
    for path in folder.glob("rank-*.json"):
        try:
            errors.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    if not errors:
        return None
    first = min(errors, key=lambda e: e["time"])
    return f"rank {first['rank']} of {first['size']} failed: {first['message']}", int(first["code"])


# -- launching ------------------------------------------------------------------------


def launch(plan: dict[str, Any], nproc: int) -> tuple[int, str | None]:
    """Run ``plan`` (see ``commands/rank.py``) as ``nproc`` ranks on this machine; returns (exit code, first error).

    Everything torchrun and the ranks leave in the temporary folder (torchrun's own ``torchelastic_*`` logs
    among it) goes with it: the ranks run with it as their ``TMPDIR``.
    """
    with tempfile.TemporaryDirectory(prefix="cifar-bench-ranks-") as folder:
        plan_file = Path(folder) / "plan.json"
        plan_file.write_text(json.dumps(plan), encoding="utf-8")
        torchrun = ["--standalone", f"--nproc-per-node={nproc}", "-m", RANK_MODULE]
        command = [sys.executable, "-m", __name__, *torchrun, "--", str(plan_file)]
        # One thread per rank is torchrun's own default; set here, it also keeps its warning out of the output.
        env = {"OMP_NUM_THREADS": "1", **os.environ, ERROR_DIR_ENV: folder, "TMPDIR": folder}
        code = subprocess.run(command, env=env, check=False).returncode
        error = first_error(Path(folder)) if code else None
    return (code, None) if error is None else (error[1], error[0])


def _torchrun(argv: Sequence[str]) -> int:
    """torchrun, except that a failed rank ends it with an exit code instead of a traceback.

    ``argv`` is torchrun's options, ``--``, then the script's arguments, which
    torchrun's own parser never sees (it would take ``--nproc`` for an
    ambiguous abbreviation of ``--nproc-per-node``). A rank killed before it
    could leave its error (by a signal, say) is described from torchrun's own
    record of the failure.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parse_args(argv[:split])
    args.training_script_args = argv[split + 1 :]
    try:
        run(args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode
        folder = os.environ.get(ERROR_DIR_ENV)
        if code < 0 and folder:  # a rank that exited with a code has already said why
            size = int(args.nproc_per_node) if str(args.nproc_per_node).isdigit() else 0  # standalone: one node
            how = f"killed by {signal.Signals(-code).name}"
            _write_error(Path(folder), rank, size, how, 1, failure.timestamp)
        return code if code > 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(_torchrun(sys.argv[1:]))


# -- a backend: each planned run as ranks under torchrun --------------------------------------


def as_rank(devices: Sequence[str], timeout_s: float | None, work: Callable[[World], int], *,
            traceback: bool = False) -> int:  # fmt: skip
    """Join the ranks torchrun started, do ``work`` as this rank (only rank 0 speaks), then leave.

    Any error ends this rank at once (so torchrun stops the others), as :func:`rank_failure` says.
    """
    # torchrun stops the other ranks with SIGTERM when one fails: that failure, not an interrupt, is what counts.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    world = join(devices, timeout_s or DEFAULT_TIMEOUT_S)
    try:
        with contextlib.nullcontext() if world.main else contextlib.redirect_stdout(io.StringIO()):
            return work(world)
    except Exception as exc:
        raise rank_failure(world, exc, traceback=traceback) from exc
    finally:
        leave()


def payload(plan: Plan, plugins: Sequence[str], *, autoload: bool | None, quiet: bool, timeout_s: float | None,
            traceback: bool = False, manifest: Path | None = None,
            track: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    """What the ranks of a launch read (see ``commands/rank.py``): the plan and how to run it.

    ``track``: the ``--track`` values rank 0 makes its trackers from (``execution/tracking.py``).
    """
    return {"plan": plan.to_dict(), "plugins": list(plugins), "autoload": autoload, "quiet": quiet,
            "timeout_s": timeout_s, "traceback": traceback,
            "manifest": None if manifest is None else str(manifest), "track": list(track)}  # fmt: skip


class Torchrun:
    """Runs each planned run as ``config.processes`` ranks under torchrun on this machine.

    Rank 0 writes the records (into the plan's results folder) and names each file it wrote in a manifest,
    which this backend reads back; a launch that died without writing one gets a failed record, made here.
    """

    def __init__(self, session: Session, plugins: Sequence[str], *, autoload: bool | None, quiet: bool = True,
                 timeout_s: float | None = None) -> None:  # fmt: skip
        self.session, self.plugins, self.autoload, self.quiet, self.timeout_s = (
            session,
            plugins,
            autoload,
            quiet,
            timeout_s,
        )

    def outcomes(self, plan: Plan) -> Iterator[Outcome]:
        for planned in plan.runs:
            yield self.run_one(planned, plan.results_dir)

    def run_one(self, planned: PlannedRun, results_dir: Path | None) -> Outcome:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="cifar-bench-launch-") as folder:
            manifest = Path(folder) / "written.json"
            one = Plan((planned,), results_dir or Path(folder), skip_absent_device=False)
            try:
                settings = payload(one, self.plugins, autoload=self.autoload, quiet=self.quiet,
                                   timeout_s=self.timeout_s, manifest=manifest)  # fmt: skip
                code, error = launch(settings, planned.config.processes)
            except KeyboardInterrupt:  # torchrun had Ctrl-C too and stops its ranks
                return Outcome(planned, [])
            paths = [Path(p) for p in read_manifest(manifest)]
            records = [RunRecord.from_dict(read_record(p)) for p in paths]
        if records:
            return Outcome(planned, [RunResult(r, info_from_record(r)) for r in records],
                           [p if results_dir is not None else None for p in paths])  # fmt: skip
        if code == 130:
            return Outcome(planned, [])
        message = error or f"exited with code {code} and wrote no record"
        print(f"cifar-bench: error: {message}", file=sys.stderr)
        return Outcome(
            planned, [self.session.unstarted(planned.config, "failed", message, time.perf_counter() - start)]
        )


def read_manifest(path: Path) -> list[str]:
    """The record files a launch's rank 0 wrote, in order (none if it wrote no manifest)."""
    try:
        return [str(p) for p in json.loads(path.read_text(encoding="utf-8"))]
    except (OSError, ValueError):
        return []
