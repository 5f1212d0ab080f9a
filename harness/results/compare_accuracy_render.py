"""How ``compare`` shows accuracy across seeds and what each verdict could detect (text and markdown).

:mod:`compare_render` lays out the whole comparison and calls these: the time
table's ``detectable`` cell, the accuracy table (each side's mean ± SD, the
difference with its interval, Welch's test, the verdict and the smallest drop
the seeds would flag), the lines ``--detect`` adds, and the accuracy half of
the rule printed under the tables.
"""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from . import compare_accuracy
from .accuracy_stats import DEFAULT_SINGLE_RUN_MAX_DROP, MeanSummary
from .compare import Comparison, PairResult, Settings


def time_detectable(pair: PairResult) -> str:
    """The slowdown these runs would catch with 80% power, beside the time verdict."""
    if pair.time_detectable is None:
        return "–"
    slowdown = pair.time_detectable.slowdown
    return "none" if slowdown is None else f"{slowdown * 100:.1f}%"


def accuracy_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """The accuracy table: each side's mean ± SD, the difference with its interval, the test, and what it could see."""
    s, rows = comparison.settings, []
    for p in comparison.pairs:
        if p.accuracy is None:
            continue
        a, t = p.accuracy, p.accuracy.verdict.test
        ci = "–" if t.ci_low is None else f"{t.ci_low:+.2f} to {t.ci_high:+.2f}"
        row = {
            "recipe": p.recipe, "device": p.device, "variant": p.variant,
            "seeds": f"{t.n_baseline}/{t.n_current}",
            "baseline acc %": _mean_sd(a.baseline), "current acc %": _mean_sd(a.current),
            "Δ pts": f"{t.difference:+.2f}", f"{round(100 * t.confidence)}% CI": ci,
            "p (drop)": "–" if t.p_drop is None else f"{t.p_drop:.2g}",
            "accuracy": a.verdict.verdict.upper() if a.verdict.regression else a.verdict.verdict,
            "detectable drop": compare_accuracy.detectable_text(a),
        }  # fmt: skip
        if a.target is not None:
            row[f"target (alpha {s.alpha:g})"] = compare_accuracy.target_text(a.target)
        rows.append(row)
    return rows


def _mean_sd(summary: MeanSummary) -> str:
    return f"{summary.mean:.2f}" + ("" if summary.sd is None else f" ± {summary.sd:.2f}")


def accuracy_section(comparison: Comparison, tablefmt: str) -> list[str]:
    """The accuracy table and, with --detect, the seeds a side each pair would need; nothing without accuracies."""
    rows = accuracy_rows(comparison)
    if not rows:
        return []
    s = comparison.settings
    lines = ["Accuracy across seeds (mean ± SD; Δ = current - baseline; one-sided Welch's t-test; detectable: the "
             f"drop flagged with 80% power at alpha {s.alpha:g}):", "",
             tabulate(rows, headers="keys", tablefmt=tablefmt, disable_numparse=True), ""]  # fmt: skip
    needed = [(p, p.accuracy.seeds) for p in comparison.pairs if p.accuracy is not None and p.accuracy.seeds]
    for p, seeds in needed:
        where = f"{p.recipe} / {p.device} / {p.variant}"
        lines.append(f"seeds needed, {where}: {compare_accuracy.seeds_text(seeds, s.alpha)}")
    return [*lines, ""] if needed else lines


def accuracy_rule(settings: Settings) -> str:
    single = max(settings.max_accuracy_drop, DEFAULT_SINGLE_RUN_MAX_DROP)
    return (f"when mean test accuracy drops by more than {settings.max_accuracy_drop:g} points and the drop is "
            f"significant (one-sided Welch's t-test, p ≤ {settings.alpha:g}; with one run a side, by more than "
            f"{single:g} points)")  # fmt: skip
