"""``cifar-bench publish PATH... --output DIR``: a static website of the records' history over commits."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ..errors import warn


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="record files or folders [results/]")
    parser.add_argument("--output", type=Path, default=Path("site"), metavar="DIR",
                        help="folder for the site; replaced if it holds an earlier site [site/]")  # fmt: skip
    parser.add_argument("--title", default="cifar-bench results", help="the site's title")


def cmd_publish(args: argparse.Namespace, report: Callable[[str], None] = warn) -> int:
    from ..results.publish.site import publish

    history = publish(args.paths or [Path("results")], args.output, args.title, report)
    print(f"wrote {args.output / 'index.html'}: {len(history.series)} workload(s), {history.runs} run(s), "
          f"{len(history.commits)} commit(s)")  # fmt: skip
    return 0
