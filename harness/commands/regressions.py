"""``cifar-bench regressions PATH...``: the change points of every series, newest first; exit 1 when a
regression begins in the window (``--since COMMIT`` / ``--last K``), so that a nightly job can gate on it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ..errors import warn
from ..results.defaults import (
    ALPHA,
    DEFAULT_MAX_ACCURACY_DROP,
    DEFAULT_MAX_INSTRUCTIONS_INCREASE,
    DEFAULT_MAX_SLOWDOWN,
    METHODS,
    MIN_SEGMENT,
)
from ..results.defaults import REPORT_FORMATS as FORMATS
from .arguments import alpha, choice_type, percentage, points, positive_int, write_output

DESCRIPTION = (
    "List the change points of every series (train time, images/s, test accuracy; instructions per step for "
    "counted runs; per workload, device and machine, as publish groups them), newest first. Exit 1 when a "
    "regression (slower beyond --max-slowdown, more instructions beyond --max-instructions-increase, or accuracy "
    "lower by more than --max-accuracy-drop, significantly) begins in the window, 0 when none does, "
    "2 on bad input. Method: E-Divisive proposes, Student's t-test of the commits' medians decides (see "
    "docs/publishing.md)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("paths", nargs="*", type=Path, metavar="PATH", help="record files or folders [results/]")
    add("--format", type=choice_type(FORMATS, "format"), default="text", help=f"{'|'.join(FORMATS)} [text]")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--since", metavar="COMMIT", help="only change points that begin after COMMIT (a hash prefix)")
    window.add_argument("--last", type=positive_int, metavar="K",
                        help="only change points that begin in the newest K commits")  # fmt: skip
    add("--max-slowdown", type=percentage, default=DEFAULT_MAX_SLOWDOWN, metavar="PCT",
        help=f"slowdown (or loss of images/s) beyond which a change point is a regression "
        f"[{DEFAULT_MAX_SLOWDOWN:.0%}]".replace("%", "%%"))  # fmt: skip
    add(
        "--max-accuracy-drop",
        type=points,
        default=DEFAULT_MAX_ACCURACY_DROP,
        metavar="POINTS",
        help=f"accuracy drop in percentage points beyond which one is a regression [{DEFAULT_MAX_ACCURACY_DROP:g}]",
    )
    add("--max-instructions-increase", type=percentage, default=DEFAULT_MAX_INSTRUCTIONS_INCREASE, metavar="PCT",
        help="rise in instructions per training step beyond which a change point of counted runs (run --measure "
        f"instructions) is a regression [{DEFAULT_MAX_INSTRUCTIONS_INCREASE:.0%}]".replace("%", "%%"))  # fmt: skip
    add("--alpha", type=alpha, default=ALPHA, help=f"significance level of a change point [{ALPHA}]")
    add("--method", type=choice_type(METHODS, "method"), default="t",
        help="t: Student's t-test of the commits' medians; permutation: shuffles of whole commits [t]")  # fmt: skip
    add("--min-segment", type=positive_int, default=MIN_SEGMENT, metavar="COMMITS",
        help=f"commits each side of a change point, at least [{MIN_SEGMENT}]")  # fmt: skip
    add("--output", type=Path, metavar="FILE", help="write the table to FILE instead of stdout")


def cmd_regressions(args: argparse.Namespace, report: Callable[[str], None] = warn) -> int:
    from ..results.reader import load_runs
    from ..results.regressions import Settings, find_regressions, table, window_start
    from ..results.regressions_render import render

    loaded = load_runs(args.paths or [Path("results")], report=report)
    settings = Settings(max_slowdown=args.max_slowdown, max_accuracy_drop=args.max_accuracy_drop,
                        max_instructions_increase=args.max_instructions_increase, method=args.method,
                        alpha=args.alpha, min_segment=args.min_segment)  # fmt: skip
    found = find_regressions(loaded.runs, settings)
    for note in found.notes:
        report(note)
    start = window_start(found.order, since=args.since, last=args.last)
    rows = table(found, start)
    write_output(render(rows, found, start, args.format), args.output)
    return 1 if (rows["regression"] != "").any() else 0
