"""``cifar-bench compare BASELINE CURRENT``: the regression gate.

Runs are paired by recipe, device and workload (see :mod:`cifar_bench.workload`:
the components and their plugins, every hyperparameter, the data, the variant
and the process count), so only like work is ever judged. Where one recipe
did different work on the two sides (another model, another epoch count,
synthetic data on one side), that pair is listed with exactly what differs
and judged on nothing; if no pair is left to judge, that is bad input.
For each pair of like work the gate asks two questions:

* is the current code slower by more than ``--max-slowdown`` *and* is that
  slowdown significant across the repeats (see :mod:`cifar_bench.stats`)?
* did mean test accuracy drop by more than ``--max-accuracy-drop`` points
  (0.5) *and* is that drop significant (Welch's t-test across seeds, see
  :mod:`cifar_bench.results.compare_accuracy`)?

Either makes the pair a regression; so does a current run that failed or
diverged where no baseline run did. Exit code 0: no regression; 1: at least
one; 2: bad input (nothing readable, nothing to pair).

Records made by ``cifar-bench ab`` (two installs taking turns step by
step) carry a per-step-paired ratio to their partner run; when CURRENT's
runs have one and their partners are in BASELINE, the gate uses those
(``--paired``, the default then; ``--no-paired`` gates on seconds): one
ratio per pair of runs, judged with the paired rank test (see
:func:`cifar_bench.stats.judge_paired_slowdown`). The output names the
method used.

Where both sides of a pair counted instructions (``run --measure instructions``), the pair is judged
on the counts instead of time: a plain threshold, ``--max-instructions-increase`` (1%), as counts do not
wander (see :mod:`cifar_bench.results.compare_instructions`).

``--ratio`` gates on each record's ``timings_ratio`` (its time divided by
that of a reference recipe run interleaved with it, ``run --reference``)
instead of on seconds: a runner that is slower for everything slows the
reference as much as the candidate, so the ratio stays put.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import UsageError
from . import compare_accuracy, compare_instructions, workload
from .accuracy_stats import DEFAULT_MAX_DROP
from .defaults import COMPARE_METRICS
from .evaluations import EvaluationChange
from .evaluations import changes as evaluation_changes
from .reader import ENVIRONMENT_FIELDS
from .stats import SlowdownDecision, judge_paired_slowdown, judge_slowdown
from .time_power import DetectableSlowdown, detectable_paired_slowdown, detectable_slowdown

if TYPE_CHECKING:  # the frames come from reader.load_runs, which imports pandas
    import pandas as pd

PAIR_KEY = ("recipe", "device", "workload")
METRICS = COMPARE_METRICS
FORMATS = ("text", "markdown", "json")
FAILED = ("failed", "diverged")  # statuses that count against the current code
DIFFERENT_WORK = "different work"  # the verdict of a pair whose sides did not do the same work


@dataclass(frozen=True)
class Settings:
    metric: str = "train_s"
    max_slowdown: float = 0.10  # a fraction: 0.10 is 10% slower
    max_accuracy_drop: float = DEFAULT_MAX_DROP  # percentage points: 0.5 (why: accuracy_stats)
    alpha: float = 0.05
    ratio: bool = False  # gate on timings_ratio (candidate / interleaved reference) instead of seconds
    paired: bool = False  # gate on per-step-paired ratios to the partner run ('cifar-bench ab')
    target_acc: float | None = None  # points: --target-acc, the one-sided test that the current mean reaches it
    detect: float | None = None  # points: --detect, the seeds a side needed to detect a drop of this size
    # A fraction: pairs with instruction counts on both sides (run --measure instructions) gate on them instead.
    max_instructions_increase: float = compare_instructions.DEFAULT_MAX_INCREASE

    @property
    def column(self) -> str:
        return "paired_step_median" if self.paired else f"ratio_{self.metric}" if self.ratio else self.metric

    @property
    def method(self) -> str:
        """Which times the gate judged, in words: every output names it."""
        if self.paired:
            return ("paired: per-step-paired ratios of each current run to its partner baseline run "
                    "(cifar-bench ab), one-sided Wilcoxon signed-rank over the run pairs")  # fmt: skip
        if self.ratio:
            return f"ratio: {self.label} (run --reference), one-sided Mann-Whitney U"
        return f"seconds: {self.label}, one-sided Mann-Whitney U"

    @property
    def label(self) -> str:
        name = self.metric.replace("_s", " s")
        return f"{name} / reference" if self.ratio else name


@dataclass
class PairResult:
    recipe: str
    device: str
    workload: str  # the workload key (of the current side, for a pair of different work)
    variant: str
    baseline_runs: int  # ok runs
    current_runs: int
    baseline_time: float | None = None  # median of the gated measure
    current_time: float | None = None
    decision: SlowdownDecision | None = None
    accuracy_change: float | None = None  # points, current minus baseline mean (what the accuracy test judges)
    verdict: str = "not compared"  # regression | slower | faster | ok | accuracy only | not compared | different work
    reasons: list[str] = field(default_factory=list)  # why the verdict, shortest first
    accuracy: compare_accuracy.AccuracyJudgement | None = None  # Welch's test across seeds, and what it could see
    time_detectable: DetectableSlowdown | None = None  # the slowdown these runs would catch with 80% power
    instructions: compare_instructions.InstructionJudgement | None = None  # counts, when both sides have them

    @property
    def regression(self) -> bool:
        return self.verdict == "regression"


@dataclass
class Comparison:
    settings: Settings
    pairs: list[PairResult]
    warnings: list[str]
    notes: list[str]
    # What one side has that was not judged, one line each: a pair of different work, one not compared,
    # or runs on one side only. A gate must not pass over these unless told they are expected.
    unjudged: list[str] = field(default_factory=list)
    # run --evaluate: each judged pair's evaluation metrics, medians of both sides and their difference (not judged)
    evaluations: list[EvaluationChange] = field(default_factory=list)

    @property
    def regressions(self) -> list[PairResult]:
        return [p for p in self.pairs if p.regression]

    @property
    def counted(self) -> bool:
        """Whether some pair was judged on instruction counts (the report then says how)."""
        return any(p.instructions is not None for p in self.pairs)


# -- comparing ----------------------------------------------------------------------


def compare_frames(baseline: pd.DataFrame, current: pd.DataFrame, *, metric: str = "train_s",
                   max_slowdown: float = 0.10, max_accuracy_drop: float = DEFAULT_MAX_DROP, alpha: float = 0.05,
                   ratio: bool = False, paired: bool | None = None, target_acc: float | None = None,
                   detect: float | None = None,
                   max_instructions_increase: float = compare_instructions.DEFAULT_MAX_INCREASE,
                   ) -> Comparison:  # fmt: skip
    """The gate over two sides' runs (frames from ``load_runs``): the comparison ``compare`` prints and exits by.

    ``paired`` None: gate on per-step-paired ratios when CURRENT has them and their partners are in
    BASELINE (``cifar-bench ab``), else on ``metric`` (seconds) or, with ``ratio``, on times relative to
    an interleaved reference run. ``target_acc`` (points) adds the test that the current mean reaches it;
    ``detect`` (points) asks how many seeds a side a drop of that size needs. Pairs with instruction
    counts on both sides are judged on them, against ``max_instructions_increase`` (a fraction).
    """
    if not 0 <= max_instructions_increase < 1:
        raise UsageError(f"the instructions increase allowed is a fraction below 1; got {max_instructions_increase}")
    if target_acc is not None and not 0 < target_acc <= 100:
        raise UsageError(f"the target accuracy is in points, above 0 and at most 100; got {target_acc}")
    if detect is not None and not 0 < detect <= 100:
        raise UsageError(f"the drop to detect is in points, above 0 and at most 100; got {detect}")
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    if ratio:  # the reference runs are the yardstick, not what is being judged
        baseline, current = baseline[baseline.role != "reference"], current[current.role != "reference"]
    if paired and (ratio or metric != "train_s"):
        raise UsageError("--paired gates on paired train steps: drop --ratio and --metric total_s, or --paired")
    if paired and not has_pairs(baseline, current):
        raise UsageError("--paired needs CURRENT records made by 'cifar-bench ab' whose partner runs are in BASELINE; "
                         "none are")  # fmt: skip
    if paired is None:  # the sharpest method the records allow
        paired = not ratio and metric == "train_s" and has_pairs(baseline, current)
    settings = Settings(metric=metric, max_slowdown=max_slowdown, max_accuracy_drop=max_accuracy_drop, alpha=alpha,
                        ratio=ratio, paired=paired, target_acc=target_acc, detect=detect,
                        max_instructions_increase=max_instructions_increase)  # fmt: skip
    return compare_runs(baseline, current, settings)


def compare_runs(baseline: pd.DataFrame, current: pd.DataFrame, settings: Settings) -> Comparison:
    """Pair the two sides' runs and judge every pair (both frames come from :func:`load_runs`)."""
    if settings.ratio and baseline[settings.column].isna().all() and current[settings.column].isna().all():
        raise UsageError(
            "--ratio needs records with a reference timing (made with 'cifar-bench run --reference RECIPE'); "
            "none of these have one"
        )
    base_places, cur_places = _places(baseline), _places(current)
    if not base_places & cur_places:
        raise UsageError(
            "no recipe/device of CURRENT matches one of BASELINE "
            f"(baseline: {_key_list(base_places)}; current: {_key_list(cur_places)})"
        )
    notes = [f"only in baseline, not compared: {_describe(baseline, k)}" for k in sorted(base_places - cur_places)]
    notes += [f"only in current, not compared: {_describe(current, k)}" for k in sorted(cur_places - base_places)]
    pairs = []
    for place in sorted(base_places & cur_places):
        b_runs, c_runs = _select(baseline, place), _select(current, place)
        b_work, c_work = _workloads(b_runs), _workloads(c_runs)
        for work in sorted(b_work.keys() & c_work.keys()):
            key = (*place, work)
            pairs.append(judge_pair(key, _select(b_runs, key), _select(c_runs, key), settings))
        unmatched = sorted(b_work.keys() - c_work.keys())
        for work in sorted(c_work.keys() - b_work.keys()):
            if not unmatched:
                notes.append(f"only in current, not compared: {_describe(current, (*place, work))}")
                continue
            # The baseline workload nearest to this one: what differs is then the change that was made.
            nearest = min(unmatched, key=lambda w: len(workload.differences(b_work[w], c_work[work])))
            unmatched.remove(nearest)
            pairs.append(different_work((*place, work), b_work[nearest], c_work[work], current))
        notes += [f"only in baseline, not compared: {_describe(baseline, (*place, w))}" for w in unmatched]
    judged = [p for p in pairs if p.verdict not in ("not compared", DIFFERENT_WORK)]
    if not judged:
        reasons = "; ".join(f"{p.recipe} / {p.device}: {', '.join(p.reasons)}" for p in pairs)
        raise UsageError(f"nothing could be compared ({reasons})")
    warnings = environment_warnings(baseline[baseline.status == "ok"], current[current.status == "ok"], settings)
    unjudged = [f"{p.recipe} / {p.device}: {'; '.join(p.reasons)}" for p in pairs if p not in judged]
    unjudged += [note.replace(", not compared: ", ": ") for note in notes if note.startswith("only in ")]
    return Comparison(settings, pairs, warnings, notes, unjudged,
                      evaluations=evaluation_changes(baseline, current, judged, settings.alpha))  # fmt: skip


def different_work(key: tuple[str, ...], base: dict, current: dict, runs: pd.DataFrame) -> PairResult:
    """A recipe that did different work on the two sides: what differs, and no verdict on speed or accuracy."""
    what = "; ".join(workload.differences(base, current))
    variant = str(_select(runs, key)["variant"].iloc[0])
    return PairResult(*key, variant=variant, baseline_runs=0, current_runs=0, verdict=DIFFERENT_WORK,
                      reasons=[f"the sides did different work ({what}): not compared"])  # fmt: skip


def judge_pair(key: tuple[str, ...], baseline: pd.DataFrame, current: pd.DataFrame, settings: Settings) -> PairResult:
    """The verdict for one recipe/device/variant, with its reasons."""
    b_ok, c_ok = baseline[baseline.status == "ok"], current[current.status == "ok"]
    variant = str((baseline if len(baseline) else current)["variant"].iloc[0])
    result = PairResult(*key, variant=variant, baseline_runs=len(b_ok), current_runs=len(c_ok))
    regressions: list[str] = []
    b_failed, c_failed = baseline[baseline.status.isin(FAILED)], current[current.status.isin(FAILED)]
    if len(c_failed) and not len(b_failed):
        statuses = "/".join(sorted(set(c_failed.status)))
        regressions.append(f"{len(c_failed)} of {len(current)} current runs {statuses} (no baseline run did)")
    if compare_instructions.counted(b_ok, c_ok):  # deterministic counts: no times to judge beside them
        regressions += _judge_instructions(result, b_ok, c_ok, settings)
    else:
        regressions += _judge_time(result, b_ok, c_ok, settings)
    regressions += _judge_accuracy(result, b_ok, c_ok, settings)
    _conclude(result, regressions, settings)
    return result


def _judge_time(result: PairResult, b_ok: pd.DataFrame, c_ok: pd.DataFrame, settings: Settings) -> list[str]:
    """The time verdict of a pair (into ``result``); returns its regression, if it is one."""
    regressions: list[str] = []
    if settings.paired:  # one ratio per pair of runs; the seconds are shown, not judged
        b_times, c_times, ratios = paired_times(b_ok, c_ok)
    else:
        b_times, c_times = _times(b_ok, settings.column), _times(c_ok, settings.column)
    if b_times and c_times:
        if settings.paired:
            decision = judge_paired_slowdown(ratios, max_slowdown=settings.max_slowdown, alpha=settings.alpha)
        else:
            decision = judge_slowdown(b_times, c_times, max_slowdown=settings.max_slowdown, alpha=settings.alpha)
        result.decision = decision
        result.time_detectable = _time_detectable(b_times, c_times, ratios if settings.paired else None, settings)
        result.baseline_time, result.current_time = _median(b_times), _median(c_times)
        change = f"{_percent(decision.estimate.ratio - 1)} {settings.label}"
        if decision.regression:
            regressions.append(change + (f" (p={decision.p_value:.3g})" if decision.judged else ""))
        elif decision.slower:
            result.reasons.append(f"{change}, not significant (p={decision.p_value:.3g})")
        if not decision.judged:
            runs = (f"{decision.current_runs} run pairs" if settings.paired
                    else f"{decision.baseline_runs} vs {decision.current_runs} runs")  # fmt: skip
            result.reasons.append(f"{runs}: too few to judge significance, threshold alone")
    elif len(b_ok) and len(c_ok):
        lacking = [side for side, times in (("baseline", b_times), ("current", c_times)) if not times]
        result.reasons.append(f"no {settings.label} on the {' or '.join(lacking)} side")
    else:
        missing = [side for side, n in (("baseline", len(b_ok)), ("current", len(c_ok))) if not n]
        result.reasons.append(f"no ok run on the {' or '.join(missing)} side")
    for name, times, ok in (("baseline", b_times, b_ok), ("current", c_times, c_ok)):
        if times and len(times) < len(ok):  # older records, or runs made without --reference under --ratio
            result.reasons.append(f"{len(ok) - len(times)} {name} run(s) without {settings.label} left out")
    return regressions


def _judge_instructions(result: PairResult, b_ok: pd.DataFrame, c_ok: pd.DataFrame, settings: Settings) -> list[str]:
    """The instruction-count verdict of a pair (into ``result``); returns its regression, if it is one."""
    judgement = compare_instructions.judge(b_ok, c_ok, settings.max_instructions_increase)
    result.instructions = judgement
    regressions, reasons = compare_instructions.describe(judgement)
    result.reasons += reasons
    return regressions


def _time_detectable(b_times: list[float], c_times: list[float], ratios: list[float] | None,
                     settings: Settings) -> DetectableSlowdown:  # fmt: skip
    """The slowdown the time rule would catch with 80% power, from these runs' own spread."""
    gate = {"alpha": settings.alpha, "max_slowdown": settings.max_slowdown}
    return detectable_paired_slowdown(ratios, **gate) if ratios is not None else detectable_slowdown(
        b_times, c_times, **gate)  # fmt: skip


def _judge_accuracy(result: PairResult, b_ok: pd.DataFrame, c_ok: pd.DataFrame, settings: Settings) -> list[str]:
    """The accuracy verdict of a pair (into ``result``): Welch's test across seeds; returns its regression, if any."""
    b_acc, c_acc = _percentages(b_ok, "test_accuracy_pct"), _percentages(c_ok, "test_accuracy_pct")
    if not b_acc or not c_acc:
        return []
    judgement = compare_accuracy.judge(b_acc, c_acc, max_drop=settings.max_accuracy_drop, alpha=settings.alpha,
                                       target=settings.target_acc, detect=settings.detect)  # fmt: skip
    result.accuracy, result.accuracy_change = judgement, judgement.difference
    regressions, reasons = compare_accuracy.describe(judgement)
    result.reasons += reasons
    return regressions


def _conclude(result: PairResult, regressions: list[str], settings: Settings) -> None:
    """The pair's one verdict, from its regressions, else from its time estimate."""
    if regressions:
        result.verdict, result.reasons = "regression", regressions + result.reasons
    elif result.instructions is not None:
        result.verdict = compare_instructions.verdict(result.instructions)
    elif result.decision is not None:
        ratio = result.decision.estimate.ratio
        if ratio > 1 + settings.max_slowdown:
            result.verdict = "slower"
        elif ratio < 1 - settings.max_slowdown:
            result.verdict = "faster"
        else:
            result.verdict = "ok"
        if result.verdict == "faster":
            result.reasons.insert(0, f"{_percent(ratio - 1)} {settings.label}")
    elif result.accuracy_change is not None:
        result.verdict = "accuracy only"  # no time to judge, but accuracy held


def environment_warnings(baseline: pd.DataFrame, current: pd.DataFrame, settings: Settings) -> list[str]:
    """One line per hardware or library field on which the two sides differ."""
    warnings = []
    for name in ENVIRONMENT_FIELDS:
        b, c = _values(baseline, name), _values(current, name)
        if b and c and b != c:
            label = name.replace("_", " ")
            warnings.append(f"the sides ran with different {label}: baseline {', '.join(b)}; current {', '.join(c)}")
    if warnings and settings.ratio:
        warnings.append("gating on reference ratios, which cancel most of a difference in runner speed")
    elif warnings:
        warnings.append("times from different hardware or libraries differ for reasons other than the code")
    if settings.ratio:
        for name, what in (("reference_recipe", "reference recipes"), ("reference_interleave", "interleaving")):
            b, c = _values(baseline, name), _values(current, name)
            if b and c and b != c:
                warnings.append(f"the sides used different {what}: baseline {', '.join(b)}; current {', '.join(c)}")
    return warnings


def _places(runs: pd.DataFrame) -> set[tuple[str, ...]]:
    """The (recipe, device) pairs the runs cover."""
    return set(runs[list(PAIR_KEY[:2])].itertuples(index=False, name=None))


def _workloads(runs: pd.DataFrame) -> dict[str, dict]:
    """workload key -> its description, for the runs of one recipe and device."""
    return dict(zip(runs["workload"], runs["workload_description"], strict=True))


def _describe(runs: pd.DataFrame, key: tuple[str, ...]) -> str:
    """``recipe / device`` with the variant (and the workload key when one is given), for notes."""
    selected = _select(runs, key)
    variants = sorted(set(selected["variant"]))
    return " / ".join([*key[:2], ", ".join(variants), *([f"workload {key[2]}"] if len(key) > 2 else [])])


def paired_times(baseline: pd.DataFrame, current: pd.DataFrame) -> tuple[list[float], list[float], list[float]]:
    """(baseline s, current s, current / baseline ratio) of each current run paired with a baseline run."""
    partners = {run_id: t for run_id, t in zip(baseline.run_id, baseline.train_s, strict=True)}
    b_times, c_times, ratios = [], [], []
    for partner, seconds, ratio in zip(current.partner_run_id, current.train_s, current.paired_step_median,
                                       strict=True):  # fmt: skip
        if partner in partners and isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 0:
            b_times.append(partners[partner])
            c_times.append(seconds)
            ratios.append(float(ratio))
    return b_times, c_times, ratios


def has_pairs(baseline: pd.DataFrame, current: pd.DataFrame) -> bool:
    """Whether some current run has a per-step-paired ratio to a run in BASELINE (made by 'cifar-bench ab')."""
    return bool(paired_times(baseline, current)[2])


def _key_list(keys: set[tuple[str, ...]]) -> str:
    return ", ".join(" / ".join(k) for k in sorted(keys)) or "none"


def _select(runs: pd.DataFrame, key: tuple[str, ...]) -> pd.DataFrame:
    """The runs whose leading PAIR_KEY columns equal ``key`` (recipe and device, or all three)."""
    for column, value in zip(PAIR_KEY, key, strict=False):
        runs = runs[runs[column] == value]
    return runs


def _finite(runs: pd.DataFrame, column: str) -> list[float]:
    return [float(v) for v in runs[column] if isinstance(v, (int, float)) and math.isfinite(v)]


def _percentages(runs: pd.DataFrame, column: str) -> list[float]:
    """An accuracy outside 0-100% measured nothing (a damaged record): it is left out, as a time <= 0 is."""
    return [v for v in _finite(runs, column) if 0 <= v <= 100]


def _times(runs: pd.DataFrame, column: str) -> list[float]:
    return [v for v in _finite(runs, column) if v > 0]


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if len(values) else None


def _values(runs: pd.DataFrame, column: str) -> list[str]:
    """The distinct values of a column as text; a whole number that pandas made a float (a column with gaps
    reads as floats) is written as the whole number it was, so 2 and 2.0 are one value."""
    present = (v for v in runs[column] if v is not None and not (isinstance(v, float) and math.isnan(v)))
    return sorted({str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in present})


def _percent(change: float) -> str:
    return f"{abs(change) * 100:.1f}% {'slower' if change > 0 else 'faster'}"
