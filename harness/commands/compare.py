"""``cifar-bench compare BASELINE CURRENT``: the regression gate (exit 0 no regression, 1 regression, 2 bad input)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError, warn
from ..results.defaults import COMPARE_METRICS as METRICS
from ..results.defaults import DEFAULT_MAX_INSTRUCTIONS_INCREASE
from .arguments import accuracy_target, alpha, choice_type, percentage, points, positive_points, write_output

FORMATS = ("text", "markdown", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline", type=Path, metavar="BASELINE", help="record file or folder of the base")
    parser.add_argument("current", type=Path, metavar="CURRENT", help="record file or folder of the change")
    add = parser.add_argument
    add("--max-slowdown", type=percentage, default=0.10, metavar="PCT",
        help="slowdown allowed before a pair can be a regression [10%%]")  # fmt: skip
    add("--max-instructions-increase", type=percentage, default=DEFAULT_MAX_INSTRUCTIONS_INCREASE, metavar="PCT",
        help="instructions per training step allowed above the baseline's, for pairs whose records both "
             "counted them (run --measure instructions): a plain threshold, as counts do not wander [1%%]")  # fmt: skip
    add("--max-accuracy-drop", type=points, default=0.5, metavar="POINTS",
        help="drop in mean test accuracy allowed, in percentage points; a larger drop is a regression when "
             "it is also significant (Welch's t-test across seeds) [0.5]")  # fmt: skip
    add("--alpha", type=alpha, default=0.05, help="significance level of the slowdown and accuracy tests [0.05]")
    add("--target-acc", type=accuracy_target, metavar="P",
        help="also test (one-sided t-test) that the current mean test accuracy reaches P: a fraction as "
             "run's --target-acc (0.55) or a percentage (55%%)")  # fmt: skip
    add(
        "--detect",
        type=positive_points,
        metavar="POINTS",
        help="print the seeds a side needed to detect a drop of POINTS with 80%% power, at each pair's spread",
    )
    add("--metric", type=choice_type(METRICS, "metric"), default="train_s",
        help="time to gate on: train_s (training steps only) or total_s (whole run) [train_s]")  # fmt: skip
    add("--ratio", action="store_true",
        help="gate on time relative to the interleaved reference run (run --reference)")  # fmt: skip
    add("--paired", action=argparse.BooleanOptionalAction, default=None,
        help="gate on per-step-paired ratios from 'cifar-bench ab' [used when CURRENT has them]")  # fmt: skip
    add("--allow-unjudged", action="store_true",
        help="exit 0 even when a recipe one side has was not judged (different work, one side only)")  # fmt: skip
    add("--format", type=choice_type(FORMATS, "format"), default="text", help="text|markdown|json [text]")
    add("--output", type=Path, metavar="FILE", help="write the report to FILE instead of stdout")


def cmd_compare(args: argparse.Namespace) -> int:
    from .. import api
    from ..results.compare_render import RENDERERS

    comparison = api.compare(args.baseline, args.current, metric=args.metric, max_slowdown=args.max_slowdown,
                             max_accuracy_drop=args.max_accuracy_drop, alpha=args.alpha, ratio=args.ratio,
                             paired=args.paired, target_acc=args.target_acc, detect=args.detect,
                             max_instructions_increase=args.max_instructions_increase)  # fmt: skip
    if args.output is not None or args.format != "text":  # text on stdout shows them already
        for message in comparison.warnings:
            warn(message)
    write_output(RENDERERS[args.format](comparison, str(args.baseline), str(args.current)), args.output)
    if comparison.unjudged and not args.allow_unjudged:  # fail closed: the gate did not look at everything
        more = f" (and {len(comparison.unjudged) - 1} more)" if len(comparison.unjudged) > 1 else ""
        raise UsageError(f"not judged: {comparison.unjudged[0]}{more}; pass --allow-unjudged if that is expected")
    return 1 if comparison.regressions else 0
