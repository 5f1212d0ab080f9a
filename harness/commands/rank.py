"""One rank of a data-parallel run started by cifar-bench: ``python -m cifar_bench.commands.rank PLAN.json``.

torchrun starts this module once per rank (see ``execution/torchrun.py``). Each rank reads the serialized
plan (RunConfigs, not command-line flags), joins the others and runs the plan; rank 0 shows the runs,
writes the records, names each file it wrote in the launcher's manifest, and ends with the table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .. import signals
from ..errors import RunFailed, UsageError, one_line


def run_plan(settings: dict[str, Any]) -> int:
    """The plan, as this rank; returns the command's exit code (rank 0's is the one that counts)."""
    from ..console import Console
    from ..execution import torchrun
    from ..execution.inprocess import InProcess
    from ..execution.plan import Plan, execute
    from ..execution.tracking import Trackers, parse
    from ..files import write_json_atomic
    from ..hooks.manager import register_inline
    from ..training.session import Session
    from .run import report

    plan = Plan.from_dict(settings["plan"])
    devices = sorted({planned.config.device for planned in plan.runs})

    def work(world) -> int:
        session = Session.load(settings["plugins"], autoload=settings["autoload"])
        trackers = Trackers.start(session, parse(settings.get("track", [])), world)  # rank 0's only
        register_inline(session.plugins, Console(progress=not settings["quiet"] and world.main), "console")
        written: list[str] = []

        def note(result, path) -> None:
            if path is not None:
                written.append(str(path))
                if settings["manifest"]:
                    write_json_atomic(Path(settings["manifest"]), written)
                if result.record.role != "reference" and (not settings["quiet"] or len(plan.runs) == 1):
                    print(f"record: {path}")

        own = plan if world.main else Plan(plan.runs, None, plan.skip_absent_device, plan.keep_going)
        try:
            return report(execute(own, InProcess(session, world), session, written=note))
        finally:
            trackers.close()  # after the last run, however it ended

    return torchrun.as_rank(devices, settings["timeout_s"], work, traceback=settings["traceback"])


def main(argv: list[str]) -> int:
    settings = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        with signals.sigterm_as_interrupt():
            return run_plan(settings)
    except (UsageError, RunFailed) as exc:
        if settings.get("traceback"):
            raise
        print(f"cifar-bench: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return signals.exit_code(signals.INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
