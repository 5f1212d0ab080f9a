"""``cifar-bench report PATH...``: run records in, a table of medians and spreads per workload out."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from ..results.defaults import DEFAULT_GROUP_BY
from ..results.defaults import REPORT_FORMATS as FORMATS
from .arguments import choice_type, write_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="record files or folders [results/]")
    parser.add_argument(
        "--format", type=choice_type(FORMATS, "format"), default="text", help=f"{'|'.join(FORMATS)} [text]"
    )
    parser.add_argument(
        "--group-by",
        default=",".join(DEFAULT_GROUP_BY),
        metavar="COLS",
        help="comma-separated columns, e.g. recipe,device,precision or recipe,git_commit [recipe,device,variant]",
    )
    parser.add_argument("--sort", metavar="COLUMN[:desc]", help="sort rows by a column, e.g. 'train_img_s:desc'")
    parser.add_argument("--include-failed", action="store_true", help="count runs of every status, by status")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write the table to FILE instead of stdout")


def cmd_report(args: argparse.Namespace) -> int:
    from ..results.reader import load_runs, select_status
    from ..results.report import render, sort_table, summarize

    runs = load_runs(args.paths or [Path("results")]).runs
    group_by = [c.strip() for c in args.group_by.split(",") if c.strip()]
    if not group_by:
        raise UsageError("--group-by needs at least one column")
    if args.include_failed and "status" not in group_by:
        group_by.append("status")  # a failed run's timings must not mix with ok ones
    runs = select_status(runs, args.include_failed)
    if runs.empty:
        raise UsageError("no run finished ok; --include-failed shows the others")
    table = sort_table(summarize(runs, group_by), args.sort)
    write_output(render(table, args.format), args.output)
    return 0
