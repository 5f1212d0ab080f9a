"""``cifar-bench plot PATH... --output FILE``: loss per epoch, accuracy against time, throughput, as one image."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError

SUFFIXES = (".png", ".svg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="record files or folders [results/]")
    parser.add_argument("--output", type=Path, required=True, metavar="FILE.png|FILE.svg", help="the image to write")


def cmd_plot(args: argparse.Namespace) -> int:
    from ..results.plot import draw
    from ..results.reader import load_runs, select_status

    output: Path = args.output
    if output.suffix.lower() not in SUFFIXES:
        raise UsageError(f"--output {output}: the image must end in {' or '.join(SUFFIXES)}")
    if not output.parent.is_dir():
        raise UsageError(f"--output {output}: no such folder {output.parent}")
    runs = select_status(load_runs(args.paths or [Path("results")]).runs, include_failed=False)
    if runs.empty:
        raise UsageError("no run finished ok: nothing to plot")
    try:
        draw(runs).savefig(output, dpi=110)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    print(f"wrote {output}")
    return 0
