"""How well does change-point detection find a planted step in a history, and how often does it cry wolf?

Synthetic histories built from the noise of real runs on this machine. First the noise: ``--invocations``
real invocations of ``cifar-bench run baseline --repeats R`` (short runs on synthetic data, one process
each, as CI makes one per commit), or the records of such runs (``--noise-from DIR``, one subfolder per
invocation), or the residuals an earlier run of this script saved (``--noise-json FILE``). Every run's
train seconds is divided by the median of all of them; the script prints the spread and how much of it
is shared by the runs of one invocation (the intra-class correlation of log times): on a shared VM a
neighbour's load lands on all runs of an invocation at once, so the runs of one commit are not
independent of each other.

Then the histories: ``--commits`` commits of ``--runs`` runs each. Under ``--noise-model invocations``
(the default) each commit draws the level of a random measured invocation (its median / the overall
median) and each of its runs a within-invocation residual (a run / its invocation's median) from the
pool: the commit-level and the run-level noise both keep the measured shape, tails included; commits are
drawn independently, as histories made one commit a night are. ``--noise-model runs`` draws every run
independently from all the measured residuals instead, which is what the noise would be if runs were
independent; it shows what the structure costs. ``--noise-model normal`` keeps the structure but not the
tails: log-normal commit levels and runs, each with the standard deviation its measured IQR implies (IQR /
1.349); with ten measured invocations the pool's tail is one or two invocations, and this shows how much
of the result rests on them.

``--method`` is how ``detect`` judges a candidate: ``t`` (the default: Student's t-test of the commits'
medians, Otava's) or ``permutation`` (shuffles of whole commits, Matteson and James's).

Cases, ``--series`` histories each (``--flat-series`` flat ones, 200 by default, for a rate of false
alarms rather than a count): flat; a step of 2%, 5% and 10% (slower from one commit on); and a
drift of +2% a commit over 5 commits (10% in all). A step begins at a commit drawn between the first and
last quarter of the history. A change point counts as finding a step when it begins within ``--within``
commits of it (a drift: within that many commits of the ramp); each planted change is found at most once
and every other change point is a false one. Precision, recall and F1 per case, how often the commit is
found exactly or within 1 and 2 commits, the median estimate of the change and how often its interval
holds the planted one; on flat histories, how many get any change point.

A second table asks what it takes: a step of ``--after-steps`` after ``--before`` commits, with 3 to 40
commits after it, at ``--after-runs`` runs a commit. With commits the unit of the test, a run more per
commit buys little where the commit-level noise dominates; commits do. Its "oracle" column is the best a
detector of that method could do: the same kind of test (a t-test of the medians' logs for ``t``, a
one-sided Mann-Whitney test of the medians for ``permutation``) told where the step is, at the same
level. "elsewhere" counts change points more than ``--within`` commits from the step (with one step
planted, mostly the step found at the wrong commit), and "range holds it" the histories where a change
point's earliest..latest holds the step.

    python benchmarks/changepoint_accuracy.py                          # measure 20 invocations x 3 runs first
    python benchmarks/changepoint_accuracy.py --noise-json noise.json  # the noise saved by an earlier run
    python benchmarks/changepoint_accuracy.py --invocations 30 --output results.json

``benchmarks/changepoint_noise/`` holds the noise behind the published figures (a 2-core AMD EPYC VM
shared with other work: quiet, mixed and loaded stretches, each with the load average before every
invocation) and the tables computed from it; ``--noise-json`` on one of them gives the same tables again.

Writes ``--output`` (JSON: the measured noise, the machine, every table). Exit code 0 when the issue's
targets are met (F1 >= 0.9 for 5% steps, no change point on any flat history, every drift found), 1 if not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tabulate import tabulate

from cifar_bench.machine import cpu_model
from cifar_bench.results.changepoints import ALPHA, MEASURES, METHODS, MIN_SEGMENT, PERMUTATIONS, detect
from cifar_bench.results.stats import slower_p_value
from cifar_bench.results.tdist import student_t_test

STEPS = (0.02, 0.05, 0.10)  # planted steps, fractions of the level
DRIFT = (0.02, 5)  # +2% a commit over 5 commits
AFTER_COMMITS = (3, 5, 10, 20, 40)  # commits after the step, for the second table
IQR_SDS = 1.349  # a normal distribution's interquartile range, in standard deviations
RUN_ARGS = ["run", "baseline", "--dataset", "synthetic", "--limit-train", "1000", "--limit-test", "200",
            "--epochs", "1", "--threads", "1", "--no-cpu-tune", "--quiet"]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--noise-from", type=Path, help="records of earlier runs, one subfolder per invocation")
    source.add_argument("--noise-json", type=Path, help="the noise saved by an earlier run of this script")
    source.add_argument("--noise-counts", type=Path,
                        help="instruction counts instead of times: the --output of benchmarks/instructions_gate.py, "
                        "each counted process of its identical installs one invocation")  # fmt: skip
    parser.add_argument("--invocations", type=int, default=20, help="invocations to measure the noise from [20]")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measured invocation [3]")
    parser.add_argument("--commits", type=int, default=20, help="commits per synthetic history [20]")
    parser.add_argument("--runs", type=int, default=3, help="runs per commit [3]")
    parser.add_argument("--series", type=int, default=50, help="histories per case [50]")
    parser.add_argument("--flat-series", type=int, default=200, help="flat histories, for the false-alarm rate [200]")
    parser.add_argument("--noise-model", choices=("invocations", "runs", "normal"), default="invocations",
                        help="commit levels and runs as measured, runs alike, or normal noise of the measured "
                        "spreads [invocations]")  # fmt: skip
    parser.add_argument("--method", choices=METHODS, default="t", help="how detect judges a candidate [t]")
    parser.add_argument("--unit", choices=("groups", "runs"), default="groups",
                        help="what detect's permutation test shuffles [groups]")  # fmt: skip
    parser.add_argument("--alpha", type=float, default=ALPHA, help=f"significance level [{ALPHA}]")
    parser.add_argument("--permutations", type=int, default=PERMUTATIONS, help=f"shuffles per test [{PERMUTATIONS}]")
    parser.add_argument("--min-segment", type=int, default=MIN_SEGMENT, help=f"commits a side [{MIN_SEGMENT}]")
    parser.add_argument("--min-change", type=float,
                        help="smallest change reported, a fraction [0 for times; with --noise-counts, the counted "
                        "measure's resolution, as regressions uses it]")  # fmt: skip
    parser.add_argument("--within", type=int, default=2, help="commits off that still count as found [2]")
    parser.add_argument("--before", type=int, default=20, help="commits before the step, second table [20]")
    parser.add_argument("--after-steps", default="0.05,0.10", help="steps of the second table [0.05,0.10]")
    parser.add_argument("--after-runs", default="3,10", help="runs per commit in the second table [3,10]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic histories [0]")
    parser.add_argument("--output", type=Path, default=Path("changepoint-accuracy.json"),
                        help="where the noise, machine and tables are written [changepoint-accuracy.json]")  # fmt: skip
    args = parser.parse_args(argv)
    counts = MEASURES["instructions_per_step"]  # detect's settings for counts, as regressions passes them
    if args.min_change is None:
        args.min_change = counts.resolution if args.noise_counts else 0.0
    args.ranks = counts.ranks if args.noise_counts else True
    return args


# -- the noise -----------------------------------------------------------------------------------------


def measure(invocations: int, repeats: int) -> tuple[list[list[float]], list[float]]:
    """Train seconds of ``repeats`` runs in each of ``invocations`` processes, and the load before each."""
    blocks, loads = [], []
    with tempfile.TemporaryDirectory(prefix="changepoint-noise-") as tmp:
        for i in range(invocations):
            loads.append(os.getloadavg()[0])
            folder = Path(tmp) / f"inv{i:03d}"
            command = [sys.executable, "-m", "cifar_bench", *RUN_ARGS, "--repeats", str(repeats),
                       "--results-dir", str(folder)]  # fmt: skip
            subprocess.run(command, check=True, capture_output=True)
            blocks.append(train_seconds(folder))
            print(f"invocation {i + 1}/{invocations}: {' '.join(f'{s:.3f}' for s in blocks[-1])} s", flush=True)
    return blocks, loads


def train_seconds(folder: Path) -> list[float]:
    """Train seconds of the ok records in a folder, in the order they started."""
    records = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    records = [r for r in records if r.get("status") == "ok" and r.get("timings", {}).get("train_s")]
    return [r["timings"]["train_s"] for r in sorted(records, key=lambda r: r.get("started_at") or "")]


def read_blocks(folder: Path) -> list[list[float]]:
    """One block per subfolder holding records (as ``measure`` writes them); records right in the folder too."""
    folders = sorted({p.parent for p in folder.rglob("*.json")})
    blocks = [train_seconds(f) for f in folders]
    return [b for b in blocks if b]


def count_blocks(path: Path) -> tuple[list[list[float]], dict]:
    """Instructions per step of every counted process of the two identical installs (``a``, ``b``) of an
    ``instructions_gate.py --output`` file, one block each: a count is its own process, and the same command
    line counts the same, so the runs of one commit are one value repeated and commits differ only as the
    counts of differently named results folders did."""
    saved = json.loads(path.read_text())
    blocks = [[float(c["per_step"])] for name, c in sorted(saved["counts"].items()) if name[0] in "ab"]
    about = {"source": f"instruction counts ({path.name})", "cpu": saved.get("machine"),
             "valgrind": saved.get("valgrind"), "steps": saved.get("steps")}  # fmt: skip
    return blocks, about


@dataclass(frozen=True)
class Noise:
    """Residuals: commit levels (an invocation's median / the overall median) and runs within (run / its median)."""

    levels: np.ndarray
    within: np.ndarray
    pooled: np.ndarray  # every run / the overall median

    @classmethod
    def from_blocks(cls, blocks: list[list[float]]) -> Noise:
        overall = float(np.median(np.concatenate(blocks)))
        medians = np.array([np.median(b) for b in blocks])
        within = np.concatenate([np.asarray(b) / np.median(b) for b in blocks])
        return cls(medians / overall, within, np.concatenate(blocks) / overall)


def describe_noise(blocks: list[list[float]]) -> dict[str, float]:
    """Spread of all runs, of commit levels and within invocations (IQR / median), and the intra-class correlation."""
    noise = Noise.from_blocks(blocks)
    sizes = [len(b) for b in blocks]
    logs = [np.log(b) for b in blocks]
    between = np.var([lg.mean() for lg in logs], ddof=1)  # one-way ANOVA on log times, unequal sizes
    icc = float("nan")  # undefined with one run per invocation (counts: each its own process)
    if sum(sizes) > len(blocks):
        within = sum(((lg - lg.mean()) ** 2).sum() for lg in logs) / (sum(sizes) - len(blocks))
        k = (sum(sizes) - sum(s * s for s in sizes) / sum(sizes)) / (len(blocks) - 1)
        icc = (k * between - within) / (k * between + (k - 1) * within)
    return {
        "invocations": len(blocks),
        "runs": sum(sizes),
        "iqr_over_median": _spread(noise.pooled),
        "commit_level_iqr": _spread(noise.levels),
        "within_iqr": _spread(noise.within),
        "max_over_median": float(noise.pooled.max()),
        "icc": float(icc),
    }


def _spread(values: np.ndarray) -> float:
    q1, q3 = np.percentile(values, [25, 75])
    return float((q3 - q1) / np.median(values))


# -- synthetic histories -------------------------------------------------------------------------------


def history(levels: np.ndarray, runs: int, noise: Noise, model: str, rng: np.random.Generator) -> list[float]:
    """Run values of a history with the given level per commit, noise drawn as ``model`` says."""
    commits = len(levels)
    if model == "runs":
        draws = rng.choice(noise.pooled, size=(commits, runs))
    elif model == "normal":  # log-normal, each part's spread from its measured IQR (1.349 SDs), no tails
        level_sd, within_sd = (np.subtract(*np.percentile(np.log(v), [75, 25])) / IQR_SDS
                               for v in (noise.levels, noise.within))  # fmt: skip
        draws = np.exp(rng.normal(0, level_sd, size=(commits, 1)) + rng.normal(0, within_sd, size=(commits, runs)))
    else:
        draws = rng.choice(noise.levels, size=(commits, 1)) * rng.choice(noise.within, size=(commits, runs))
    return list((levels[:, None] * draws).ravel())


def planted(case: str, commits: int, rng: np.random.Generator) -> tuple[np.ndarray, int | None, int | None]:
    """Levels per commit for a case, and the commits the change spans (first, last), or None for flat."""
    levels = np.ones(commits)
    if case == "flat":
        return levels, None, None
    start = int(rng.integers(commits // 4, commits - commits // 4 + 1))
    if case == "drift":
        rate, span = DRIFT
        ramp = 1 + rate * np.arange(1, commits - start + 1)
        levels[start:] = np.minimum(ramp, 1 + rate * span)
        return levels, start, start + span - 1
    levels[start:] = 1 + float(case)
    return levels, start, start


@dataclass
class Tally:
    series: int = 0
    planted: int = 0
    found: int = 0
    detected: int = 0
    flagged_series: int = 0
    exact: int = 0
    within_1: int = 0
    within_2: int = 0
    covered: int = 0
    with_interval: int = 0
    seconds: float = 0.0
    oracle: int = 0  # histories where a test told the planted commit would call it (see oracle())
    range_holds: int = 0  # histories with a change point whose earliest..latest holds (meets) the planted change

    def __post_init__(self) -> None:
        self.estimates: list[float] = []


def score(tally: Tally, points: list, first: int | None, last: int | None, size: float | None, within: int) -> None:
    """Count one history's change points against the change planted in commits first..last."""
    tally.series += 1
    tally.detected += len(points)
    tally.flagged_series += bool(points)
    if first is None:
        return
    tally.planted += 1
    tally.range_holds += any(p.earliest <= last and p.latest >= first for p in points)
    off = [max(first - p.group, p.group - last, 0) for p in points]
    if not off or min(off) > within:
        return
    tally.found += 1
    nearest = points[int(np.argmin(off))]
    tally.exact += min(off) == 0
    tally.within_1 += min(off) <= 1
    tally.within_2 += min(off) <= 2
    if size is not None:
        tally.estimates.append(nearest.magnitude)
        if nearest.low is not None:
            tally.with_interval += 1
            tally.covered += nearest.low <= 1 + size <= nearest.high


def run_case(args: argparse.Namespace, noise: Noise, case: str, commits: int, runs: int, unit: str,
             seed: int) -> Tally:  # fmt: skip
    rng = np.random.default_rng(seed)
    tally = Tally()
    for _ in range(args.flat_series if case == "flat" else args.series):
        levels, first, last = planted(case, commits, rng)
        values = history(levels, runs, noise, args.noise_model, rng)
        groups = [c for c in range(commits) for _ in range(runs)]
        started = time.perf_counter()
        points = detect(values, groups, method=args.method, alpha=args.alpha, permutations=args.permutations,
                        min_segment=args.min_segment, unit=unit, seed=int(rng.integers(2**31)),
                        min_change=args.min_change, ranks=args.ranks)  # fmt: skip
        tally.seconds += time.perf_counter() - started
        size = None if case in ("flat", "drift") else float(case)
        score(tally, points, first, last, size, args.within)
        tally.oracle += first is not None and oracle(values, runs, first, last, args.alpha, args.method)
    return tally


def row(label: str, t: Tally) -> dict[str, str]:
    if t.planted == 0:
        return {"case": label, "histories": str(t.series), "with a change point": str(t.flagged_series),
                "change points": str(t.detected), "s / history": f"{t.seconds / t.series:.3f}"}  # fmt: skip
    precision = t.found / t.detected if t.detected else float("nan")
    recall = t.found / t.planted
    f1 = 2 * precision * recall / (precision + recall) if t.found else 0.0
    return {
        "case": label,
        "histories": str(t.series),
        "change points": str(t.detected),
        "precision": f"{precision:.2f}",
        "recall": f"{recall:.2f}",
        "F1": f"{f1:.2f}",
        "exact / ±1 / ±2": f"{t.exact}/{t.within_1}/{t.within_2}" if t.found else "–",
        "median estimate": f"{statistics.median(t.estimates):.3f}" if t.estimates else "–",
        "interval holds it": f"{t.covered}/{t.with_interval}" if t.with_interval else "–",
        "range holds it": f"{t.range_holds}/{t.planted}",
        "oracle": f"{t.oracle / t.planted:.2f}",
        "s / history": f"{t.seconds / t.series:.3f}",
    }


def f1_of(t: Tally) -> float:
    precision = t.found / t.detected if t.detected else 0.0
    recall = t.found / t.planted if t.planted else 0.0
    return 2 * precision * recall / (precision + recall) if t.found else 0.0


# -- machine, timing, main -----------------------------------------------------------------------------


def timing(commits: int, runs: int, step: float | None, method: str) -> float:
    """Seconds one detect takes on a history of this size, median of 3.

    Flat, or a step half-way under small noise (1% a commit, 1% a run), so that the step is found and
    its test runs all its shuffles: the dearest case, where a flat history stops after a few dozen.
    """
    rng = np.random.default_rng(1)
    levels = np.ones(commits)
    if step is not None:
        levels[commits // 2 :] = 1 + step
    offsets = rng.normal(0, 0.01, size=(commits, 1)) + rng.normal(0, 0.01, size=(commits, runs))
    values = list((levels[:, None] * np.exp(offsets)).ravel())
    groups = [c for c in range(commits) for _ in range(runs)]
    times = []
    for _ in range(3):
        started = time.perf_counter()
        found = detect(values, groups, method=method)
        times.append(time.perf_counter() - started)
    assert (step is None) == (not found), "the timed history should be flat or have its step found"
    return statistics.median(times)


def load_noise(args: argparse.Namespace) -> tuple[list[list[float]], dict]:
    if args.noise_json:
        saved = json.loads(args.noise_json.read_text())
        return saved["noise"]["blocks"], saved["noise"].get("measured", {})
    if args.noise_from:
        return read_blocks(args.noise_from), {"source": str(args.noise_from)}
    if args.noise_counts:
        return count_blocks(args.noise_counts)
    started = os.getloadavg()
    blocks, loads = measure(args.invocations, args.repeats)
    measured = {"source": "measured", "command": " ".join(RUN_ARGS), "cpu": cpu_model(), "cores": os.cpu_count(),
                "load_before_each": loads, "load_at_start": started[0], "load_at_end": os.getloadavg()[0]}  # fmt: skip
    return blocks, measured


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    blocks, measured = load_noise(args)
    if len(blocks) < 2:
        raise SystemExit("need at least two invocations' runs to measure the noise")
    noise, summary = Noise.from_blocks(blocks), describe_noise(blocks)
    load_start = os.getloadavg()[0]
    cases = ["flat", *[str(s) for s in STEPS], "drift"]
    tallies = {
        c: run_case(args, noise, c, args.commits, args.runs, args.unit, args.seed + i) for i, c in enumerate(cases)
    }
    other = "runs" if args.unit == "groups" else "groups"
    contrast = run_case(args, noise, "flat", args.commits, args.runs, other, args.seed)
    labels = {
        "flat": "flat",
        "drift": f"drift +{DRIFT[0]:.0%}/commit x {DRIFT[1]}",
        **{str(s): f"step {s:.0%}" for s in STEPS},
    }
    table = [row(labels[c], t) for c, t in tallies.items()] + [row(f"flat, unit={other}", contrast)]
    after = []
    for step in [float(x) for x in args.after_steps.split(",")]:
        for runs in [int(r) for r in args.after_runs.split(",")]:
            for n_after in AFTER_COMMITS:
                t = run_after(args, noise, step, n_after, runs)
                after.append({"step": f"{step:.0%}", "runs / commit": str(runs), "commits after": str(n_after),
                              "found": f"{t.found}/{t.planted}", "exact": str(t.exact),
                              "elsewhere": str(t.detected - t.found), "range holds it": str(t.range_holds),
                              "oracle": f"{t.oracle}/{t.planted}"})  # fmt: skip
    timings = {f"{c} commits x 3 runs, {'flat' if s is None else f'{s:.0%} step found'}": timing(c, 3, s, args.method)
               for c in (20, 100) for s in (None, 0.10)}  # fmt: skip
    report(args, summary, measured, table, after, timings, load_start)
    met = f1_of(tallies["0.05"]) >= 0.9 and tallies["flat"].flagged_series == 0
    met = met and tallies["drift"].found == tallies["drift"].planted
    write(args, blocks, summary, measured, table, after, timings, met)
    print("targets met" if met else "targets NOT met")
    return 0 if met else 1


def run_after(args: argparse.Namespace, noise: Noise, step: float, after: int, runs: int) -> Tally:
    """A step after ``--before`` commits, followed by ``after`` commits."""
    before = args.before
    rng = np.random.default_rng([args.seed, 100, after, runs, round(step * 1000)])
    tally = Tally()
    for _ in range(args.series):
        levels = np.concatenate([np.ones(before), np.full(after, 1 + step)])
        values = history(levels, runs, noise, args.noise_model, rng)
        groups = [c for c in range(before + after) for _ in range(runs)]
        points = detect(values, groups, method=args.method, alpha=args.alpha, permutations=args.permutations,
                        min_segment=args.min_segment, unit=args.unit, seed=int(rng.integers(2**31)),
                        min_change=args.min_change, ranks=args.ranks)  # fmt: skip
        score(tally, points, before, before, step, args.within)
        tally.oracle += oracle(values, runs, before, before, args.alpha, args.method)
    return tally


def oracle(values: list[float], runs: int, first: int, last: int, alpha: float, method: str) -> bool:
    """Whether a test told where the change is would call it: the commits' medians after it against before.

    The best a detector of that method can hope for: one test, at the known commit (a drift's ramp left
    out): the two-sided t-test of the medians' logs for ``t``, one-sided Mann-Whitney for ``permutation``.
    """
    medians = np.median(np.reshape(values, (-1, runs)), axis=1)
    before, after = list(medians[:first]), list(medians[last + 1 :])
    if not before or not after:  # a drift still rising at the newest commit: nothing after it to compare
        return False
    if method == "t":
        return student_t_test(list(np.log(before)), list(np.log(after))).p_value <= alpha
    return slower_p_value(before, after) <= alpha


def report(args: argparse.Namespace, summary: dict, measured: dict, table: list, after: list, timings: dict,
           load_start: float) -> None:  # fmt: skip
    print()
    print(f"noise: {summary['invocations']} invocations, {summary['runs']} runs ({measured.get('source', '?')}); "
          f"IQR / median of all runs {summary['iqr_over_median']:.1%}, of invocation medians "
          f"{summary['commit_level_iqr']:.1%}, within an invocation {summary['within_iqr']:.1%}; slowest run "
          f"{summary['max_over_median']:.2f} x the median; intra-class correlation {summary['icc']:.2f}")  # fmt: skip
    if "load_before_each" in measured:
        loads = measured["load_before_each"]
        print(f"measured on: {measured['cpu']}, {measured['cores']} cores; load average {min(loads):.2f}-"
              f"{max(loads):.2f} (1 min) during the measurement")  # fmt: skip
    print(f"histories: {args.commits} commits x {args.runs} runs, {args.series} per case ({args.flat_series} flat), "
          f"noise model "
          f"{args.noise_model}; detect(method={args.method}, alpha={args.alpha}, permutations={args.permutations}, "
          f"min_segment={args.min_segment}, unit={args.unit}, min_change={args.min_change}, ranks={args.ranks}); "
          f"found = within {args.within} commits")  # fmt: skip
    print()
    print(tabulate(table, headers="keys", tablefmt="github", disable_numparse=True))
    print()
    print(f"a step after {args.before} commits: found with how many commits after it ({args.series} histories each)")
    print(tabulate(after, headers="keys", tablefmt="github", disable_numparse=True))
    print()
    for label, seconds in timings.items():
        print(f"detect on {label}: {seconds:.3f} s")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy "
          f"{np.__version__}; load average {load_start:.2f} at the start of the synthetic part, "
          f"{os.getloadavg()[0]:.2f} at the end (wall-clock figures are provisional on a shared machine)")  # fmt: skip


def write(args: argparse.Namespace, blocks: list, summary: dict, measured: dict, table: list, after: list,
          timings: dict, met: bool) -> None:  # fmt: skip
    out = {
        "noise": {"blocks": blocks, "summary": summary, "measured": measured},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load": os.getloadavg()},
        "table": table,
        "after": after,
        "timings_s": timings,
        "targets_met": met,
    }
    args.output.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
