"""The accuracy half of ``compare``'s verdicts, and the smallest difference each verdict could have detected.

Accuracy is judged on the mean across seeds (:mod:`accuracy_stats`):
Welch's t-test of current minus baseline mean test accuracy, in percentage
points. A **regression** is a drop both significant at ``--alpha`` and
larger than ``--max-accuracy-drop``; a significant gain is reported as an
**improvement**. With one run a side nothing measures the noise, and only a
drop beyond the single-run threshold (5 points) counts.

Beside every verdict stands what the comparison could have seen: the drop
(points) its seeds would flag with 80% power, and for time the slowdown (%)
its runs would (:mod:`time_power`). ``--target-acc`` adds the one-sided
t-test that the current mean reaches a target; ``--detect D`` says how many
seeds a side a drop of D points needs.

This module judges and describes; :mod:`compare` calls it for each pair and
:mod:`compare_render` shows it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .accuracy_stats import (
    DEFAULT_POWER,
    AccuracyVerdict,
    MeanSummary,
    TargetTest,
    judge_accuracy,
    reaches_target,
    seeds_needed,
    summarize,
)
from .stats import SlowdownDecision
from .time_power import DetectableSlowdown


@dataclass(frozen=True)
class SeedsNeeded:
    """``compare --detect D``: seeds a side for a ``power`` chance of catching a true drop of ``drop`` points.

    ``sd`` is the pooled SD of the pair's runs (points; None when no side
    has two runs). ``seeds``: by the gate (significant *and* beyond
    ``max_drop``), None when the gate never flags such a drop (``drop`` is
    not beyond ``max_drop``) or nothing measured the spread; ``test_alone``:
    by the t-test alone (no threshold).
    """

    drop: float
    sd: float | None
    seeds: int | None
    test_alone: int | None
    max_drop: float
    power: float


@dataclass(frozen=True)
class AccuracyJudgement:
    """One pair's accuracy: each side summarised, the gate's verdict, and the optional target and seeds answers."""

    verdict: AccuracyVerdict
    baseline: MeanSummary
    current: MeanSummary
    target: TargetTest | None = None
    seeds: SeedsNeeded | None = None

    @property
    def difference(self) -> float:
        """Current minus baseline mean, points."""
        return self.verdict.test.difference


def pooled_sd(baseline: Sequence[float], current: Sequence[float]) -> float | None:
    """The SD of one run (points), pooled over both sides' runs about their own means; None without two runs a side."""
    sides = [list(side) for side in (baseline, current) if len(side) >= 2]
    if not sides:
        return None
    squares = sum((v - statistics.fmean(side)) ** 2 for side in sides for v in side)
    return math.sqrt(squares / sum(len(side) - 1 for side in sides))


def plan_seeds(baseline: Sequence[float], current: Sequence[float], drop: float, *, max_drop: float,
               alpha: float) -> SeedsNeeded:  # fmt: skip
    """Seeds a side for an 80% chance of flagging a true drop of ``drop`` points, at this pair's spread."""
    sd = pooled_sd(baseline, current)
    if sd is None:
        return SeedsNeeded(drop, None, None, None, max_drop, DEFAULT_POWER)
    gate = seeds_needed(sd, drop, alpha=alpha, threshold=max_drop)
    alone = seeds_needed(sd, drop, alpha=alpha)
    return SeedsNeeded(drop, sd, gate, alone, max_drop, DEFAULT_POWER)


def judge(baseline: Sequence[float], current: Sequence[float], *, max_drop: float, alpha: float,
          target: float | None = None, detect: float | None = None) -> AccuracyJudgement:  # fmt: skip
    """The accuracy verdict of one pair from each side's test accuracies (points, finite, at least one a side)."""
    verdict = judge_accuracy(baseline, current, max_drop=max_drop, alpha=alpha)
    return AccuracyJudgement(
        verdict=verdict,
        baseline=summarize(baseline),
        current=summarize(current),
        target=None if target is None else reaches_target(current, target, alpha=alpha),
        seeds=None if detect is None else plan_seeds(baseline, current, detect, max_drop=max_drop, alpha=alpha),
    )


# -- words ---------------------------------------------------------------------------------------------------


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.2g}"


def detectable_text(judgement: AccuracyJudgement) -> str:
    """The smallest drop this pair's seeds flag with 80% power, in words."""
    v = judgement.verdict
    if v.detectable is None:
        return "none: one run a side"
    return f"{v.detectable:.2f} pts"


def describe(judgement: AccuracyJudgement) -> tuple[list[str], list[str]]:
    """(regressions, other reasons) for the pair's ``why``: the verdict in one line, the detectable drop beside it."""
    v, t = judgement.verdict, judgement.verdict.test
    change = f"accuracy {t.difference:+.2f} points"
    if not v.judged:
        if v.regression:
            return [f"{change}, beyond the {v.max_drop:g}-point single-run threshold (one run a side: no test)"], []
        return [], [f"{change}: one run a side, no test; only a drop beyond {v.max_drop:g} points would count"]
    ci = f"{100 * t.confidence:.0f}% CI {t.ci_low:+.2f} to {t.ci_high:+.2f}"
    if v.regression:
        return [f"{change} ({ci}, p={_p(t.p_drop)}), beyond {v.max_drop:g}"], []
    if v.improvement:
        return [], [f"{change}, a significant improvement ({ci}, p={_p(t.p_gain)})"]
    if v.verdict == "drop within threshold":
        return [], [f"{change}, significant (p={_p(t.p_drop)}) but within {v.max_drop:g}"]
    return [], [f"{change}, not significant (p={_p(t.p_drop)}; detectable: {detectable_text(judgement)})"]


def target_text(target: TargetTest) -> str:
    """``--target-acc``: whether the current mean reaches the target, with its one-sided test."""
    if target.p_value is None:
        return f"{target.target:g}%: one run, no test"
    word = "reached" if target.reached else "not shown"
    return f"{target.target:g}%: {word} (lower bound {target.lower_bound:.2f}, p={_p(target.p_value)})"


def seeds_text(seeds: SeedsNeeded, alpha: float) -> str:
    """``--detect D``: the seeds a side needed, in one sentence."""
    power = f"{100 * seeds.power:.0f}% power at alpha {alpha:g}"
    if seeds.sd is None:
        return f"a {seeds.drop:g}-point drop: no side has two runs, so nothing measures the spread"
    spread = f"SD {seeds.sd:.2f} points, pooled from these runs"
    alone = "more than a million" if seeds.test_alone is None else str(seeds.test_alone)
    if seeds.drop <= seeds.max_drop:
        never = f"a {seeds.drop:g}-point drop is never a regression here (not beyond --max-accuracy-drop"
        return f"{never} {seeds.max_drop:g}); the t-test alone would need {alone} seeds a side ({power}; {spread})"
    gate = "more than a million" if seeds.seeds is None else str(seeds.seeds)
    return (f"a {seeds.drop:g}-point drop needs {gate} seeds a side to be flagged with {power} ({spread}; "
            f"the t-test alone: {alone})")  # fmt: skip


def short(judgement: AccuracyJudgement) -> str:
    """The change for a compact cell (publish): ``-0.42 pts acc (90% CI -0.91 to +0.07, p=0.07)``.

    The p-value is the one-sided test in the direction of the change (of a drop for a drop).
    """
    t = judgement.verdict.test
    change = f"{t.difference:+.2f} pts acc"
    if t.ci_low is None or t.ci_high is None:
        return f"{change} (one run a side)"
    p = t.p_gain if t.difference > 0 else t.p_drop
    return f"{change} ({100 * t.confidence:.0f}% CI {t.ci_low:+.2f} to {t.ci_high:+.2f}, p={_p(p)})"


# -- machine-readable ----------------------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _summary(summary: MeanSummary) -> dict[str, Any]:
    return {"n": summary.n, "mean": summary.mean, "sd": summary.sd, "ci_low": summary.ci_low,
            "ci_high": summary.ci_high, "confidence": summary.confidence}  # fmt: skip


def accuracy_fields(judgement: AccuracyJudgement) -> dict[str, Any]:
    """A pair's ``accuracy`` in ``compare --format json``: points; ``p_value`` is the one-sided p of a drop."""
    v, t = judgement.verdict, judgement.verdict.test
    return {
        "difference": t.difference,
        "ci_low": t.ci_low,
        "ci_high": t.ci_high,
        "confidence": t.confidence,
        "p_value": t.p_drop,
        "p_gain": t.p_gain,
        "n_baseline": t.n_baseline,
        "n_current": t.n_current,
        "detectable": v.detectable,
        "detectable_test_alone": t.detectable,
        "df": _finite(t.df),
        "se": t.se,
        "method": t.method,
        "verdict": v.verdict,
        "judged": v.judged,
        "regression": v.regression,
        "improvement": v.improvement,
        "max_drop": v.max_drop,
        "baseline": _summary(judgement.baseline),
        "current": _summary(judgement.current),
        "target": None if judgement.target is None else _target(judgement.target),
        "seeds_needed": None if judgement.seeds is None else _seeds(judgement.seeds),
    }


def _target(target: TargetTest) -> dict[str, Any]:
    return {"target": target.target, "mean": target.mean, "lower_bound": target.lower_bound,
            "p_value": target.p_value, "reached": target.reached, "n": target.n}  # fmt: skip


def _seeds(seeds: SeedsNeeded) -> dict[str, Any]:
    return {"drop": seeds.drop, "sd": seeds.sd, "seeds_a_side": seeds.seeds, "test_alone": seeds.test_alone,
            "power": seeds.power}  # fmt: skip


def _percent(ratio: float | None) -> float | None:
    return None if ratio is None else 100 * (ratio - 1)


def time_fields(decision: SlowdownDecision, detectable: DetectableSlowdown | None) -> dict[str, Any]:
    """A pair's ``time`` in ``compare --format json``: the slowdown in percent (current / baseline - 1; < 0 faster)."""
    estimate = decision.estimate
    slowdown = None if detectable is None else detectable.slowdown
    return {
        "difference": _percent(estimate.ratio),
        "ci_low": _percent(estimate.low),
        "ci_high": _percent(estimate.high),
        "confidence": estimate.confidence,
        "p_value": decision.p_value,
        "n_baseline": decision.baseline_runs,
        "n_current": decision.current_runs,
        "detectable": None if slowdown is None else 100 * slowdown,
        "detectable_method": None if detectable is None else detectable.method,
        "spread": None if detectable is None else detectable.spread,
        "judged": decision.judged,
        "regression": decision.regression,
    }
