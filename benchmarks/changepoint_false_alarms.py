"""How often change-point detection finds a change in a flat history, as the history grows longer.

The t-test judges the split E-Divisive found most different, and its p-value does not pay for that
choice (Otava's does not either): the longer the history, the more places the split could have been, and
the more often a flat history gets a change point at the same level. This script counts, for each length
(``--lengths`` commits of ``--runs`` runs), the flat histories in which ``detect`` finds any change point,
with each of ``--methods`` at ``--alpha``, from the same noise as ``changepoint_accuracy.py`` (its
``--noise-json`` files and its "invocations" and "normal" noise models):

    python benchmarks/changepoint_false_alarms.py --noise-json benchmarks/changepoint_noise/epyc-quiet-10.json
    python benchmarks/changepoint_false_alarms.py --noise-json ... --noise-model normal --series 400

Prints a table, the settings and the machine. Each length draws its histories from its own seed, so a
length's row does not depend on which other lengths are asked for.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
from changepoint_accuracy import Noise, count_blocks, cpu_model, history
from tabulate import tabulate

from cifar_bench.results.changepoints import ALPHA, MEASURES, METHODS, MIN_SEGMENT, detect


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--noise-json", type=Path, help="noise saved by changepoint_accuracy.py")
    source.add_argument("--noise-counts", type=Path,
                        help="instruction counts (instructions_gate.py --output), searched as regressions searches "
                        "counts: on values, changes under the counts' resolution not reported")  # fmt: skip
    parser.add_argument("--noise-model", choices=("invocations", "normal"), default="invocations",
                        help="commit levels as measured, or log-normal at their spread [invocations]")  # fmt: skip
    parser.add_argument("--lengths", default="10,20,50,100", help="commits per history [10,20,50,100]")
    parser.add_argument("--runs", type=int, default=3, help="runs per commit [3]")
    parser.add_argument("--series", type=int, default=400, help="flat histories per length [400]")
    parser.add_argument("--methods", default="t", help=f"detect's methods, comma-separated, of {METHODS} [t]")
    parser.add_argument("--alpha", type=float, default=ALPHA, help=f"significance level [{ALPHA}]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic histories [0]")
    args = parser.parse_args(argv)
    args.methods = args.methods.split(",")
    if unknown := set(args.methods) - set(METHODS):
        parser.error(f"unknown method(s) {', '.join(sorted(unknown))}: use {', '.join(METHODS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.noise_counts:
        blocks, source = count_blocks(args.noise_counts)[0], args.noise_counts.name
        how = MEASURES["instructions_per_step"]
        settings = {"min_change": how.resolution, "ranks": how.ranks}
    else:
        blocks, source = json.loads(args.noise_json.read_text())["noise"]["blocks"], args.noise_json.name
        settings = {}
    noise = Noise.from_blocks(blocks)
    rows = []
    for commits in (int(c) for c in args.lengths.split(",")):
        rng = np.random.default_rng([args.seed, commits])
        flagged = dict.fromkeys(args.methods, 0)
        groups = [c for c in range(commits) for _ in range(args.runs)]
        for _ in range(args.series):
            values = history(np.ones(commits), args.runs, noise, args.noise_model, rng)
            for method in args.methods:
                flagged[method] += bool(detect(values, groups, method=method, alpha=args.alpha, **settings))  # type: ignore[arg-type]
        rows.append({"commits": commits, **{f"{m}: with a change point": f"{n} / {args.series} ({n / args.series:.1%})"
                                            for m, n in flagged.items()}})  # fmt: skip
    print(f"flat histories with a change point: detect at level {args.alpha}, at least {MIN_SEGMENT} commits "
          f"a side, {args.runs} runs a commit, noise {source} drawn as "
          f"'{args.noise_model}', seed {args.seed}")  # fmt: skip
    print(tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True))
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy "
          f"{np.__version__}; load average {os.getloadavg()[0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
