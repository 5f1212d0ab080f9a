"""Argument types the commands share: each refuses a bad value with one line that says what is wanted."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import UsageError
from ..training.config import MAX_SEED


def plugin_flag(parser: argparse.ArgumentParser, dest: str = "plugins_sub") -> None:
    parser.add_argument(
        "-p",
        dest=dest,
        action="append",
        default=[],
        metavar="PLUGIN",
        help="load a plugin: module.path or path/to/file.py; -p no:NAME disables one (repeatable)",
    )


def tracking_flags(parser: argparse.ArgumentParser) -> None:
    """``--track`` and ``--mlflow-experiment``, ``run``'s and ``suite``'s (see execution/tracking.py)."""
    parser.add_argument("--track", action="append", default=[], metavar="NAME[=ARG]",
                        help="log each run to an experiment tracker (repeatable): mlflow[=EXPERIMENT], "
                             "tensorboard[=DIR] [runs/], or a plugin's (see 'cifar-bench list')")  # fmt: skip
    parser.add_argument("--mlflow-experiment", metavar="NAME",
                        help="with --track mlflow: the MLflow experiment [each run's recipe]")  # fmt: skip


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 0, got {text!r}")
    return int(text)


def seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**63-1, got {value}")
    return value


def threads(text: str) -> int:
    value = positive_int(text)
    cores = os.cpu_count() or 1
    if value > cores:  # more threads than cores only take turns on them, and slow every step down
        raise argparse.ArgumentTypeError(f"{value} is more than this machine's {cores} CPU cores: use at most {cores}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def key_value(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)  # numbers, true/false, lists ...
    except json.JSONDecodeError:
        value = raw  # anything else is a string
    return key.strip(), value


def choice_type(choices: Sequence[str], what: str) -> Callable[[str], str]:
    """An argparse type that refuses unknown values with one line naming the known ones."""

    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}: use one of {', '.join(choices)}")
        return text

    return parse


def percentage(text: str) -> float:
    """``10`` or ``10%`` -> 0.10."""
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage such as 10 or 10%, got {text!r}") from None
    if not 0 <= value < 1000:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1000 percent, got {text!r}")
    return value / 100


def points(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of accuracy points, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be between 0 and 100 points, got {text!r}")
    return value


def alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability such as 0.05, got {text!r}") from None
    if not 0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"must be above 0 and below 0.5, got {text!r}")
    return value


def write_output(text: str, output: Path | None) -> None:
    """To ``output`` when given (its folder must exist), else to stdout."""
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None


# -- accuracy across seeds: compare --target-acc and --detect, run --seeds ----------------------------------

#: The most seeds one --seeds may list: each is a whole training run.
MAX_LISTED_SEEDS = 10_000


def positive_points(text: str) -> float:
    """Accuracy points above 0 (``compare --detect``)."""
    value = points(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be above 0 points")
    return value


def accuracy_target(text: str) -> float:
    """``0.55`` (a fraction, as ``run --target-acc``) or ``55%`` -> 55.0 percentage points."""
    wanted = f"expected a fraction above 0 and at most 1 (0.55) or a percentage (55%), got {text!r}"
    percent = text.strip().endswith("%")
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(wanted) from None
    if percent and 0 < value <= 100:
        return value
    if not percent and 0 < value <= 1:
        return 100 * value
    raise argparse.ArgumentTypeError(wanted)


def seed_list(text: str) -> tuple[int, ...]:
    """``0-9``, ``0,2,5`` or both (``0-4,10``): the seeds in the order given, each once."""
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not part.strip() or not first.strip().isdigit() or (dash and not last.strip().isdigit()):
            raise argparse.ArgumentTypeError(f"expected seeds such as 0-9 or 0,2,5; got {text!r}")
        low = int(first)
        high = int(last) if dash else low
        if high < low:
            raise argparse.ArgumentTypeError(f"the range {part.strip()} runs backwards: write {high}-{low}")
        if high > MAX_SEED:
            raise argparse.ArgumentTypeError(f"seeds must be between 0 and 2**63-1, got {high}")
        if len(seeds) + high - low + 1 > MAX_LISTED_SEEDS:
            raise argparse.ArgumentTypeError(f"{text!r} lists more than {MAX_LISTED_SEEDS:,} seeds")
        seeds.extend(range(low, high + 1))
    repeated = [seed for seed, count in Counter(seeds).items() if count > 1]
    if repeated:  # the same seed twice is the same run twice: it would count as two independent samples
        raise argparse.ArgumentTypeError(f"seed {repeated[0]} is listed twice in {text!r}; each seed runs once")
    return tuple(seeds)
