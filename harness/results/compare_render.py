"""How a comparison is shown: a text table, a pull-request comment (markdown), or JSON for machines."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from tabulate import tabulate

from . import compare_accuracy, compare_instructions
from .compare import DIFFERENT_WORK, Comparison, Settings
from .compare_accuracy_render import accuracy_rule, accuracy_section, time_detectable
from .evaluations import change_rows


def table_rows(comparison: Comparison) -> list[dict[str, Any]]:
    s = comparison.settings
    ci_label = f"{round((1 - 2 * s.alpha) * 100)}% CI"
    rows = []
    for p in comparison.pairs:
        d = p.decision
        ci = "n/a" if d is None or d.estimate.low is None else f"{d.estimate.low:.3f}–{d.estimate.high:.3f}"
        rows.append({
            "recipe": p.recipe,
            "device": p.device,
            "variant": p.variant,
            "workload": p.workload,
            "runs": f"{p.baseline_runs}/{p.current_runs}",
            f"baseline {s.label}": _fmt(p.baseline_time, ".4g"),
            f"current {s.label}": _fmt(p.current_time, ".4g"),
            "ratio": _fmt(d.estimate.ratio if d else None, ".3f"),
            ci_label: ci,
            "p": _fmt(d.p_value if d else None, ".3g"),
            "detectable": time_detectable(p),
            **(compare_instructions.cells(p.instructions) if comparison.counted else {}),
            "acc Δ pts": _fmt(p.accuracy_change, "+.2f"),
            "verdict": p.verdict.upper() if p.regression else p.verdict,
            "why": "; ".join(p.reasons),
        })  # fmt: skip
    return rows


def _table(comparison: Comparison, tablefmt: str) -> str:
    """The pairs as a table; cells are pre-formatted strings, so tabulate must not re-parse them."""
    rows = table_rows(comparison)
    numeric = {"runs", "ratio", "p", "acc Δ pts", "detectable", "instr Δ"}
    align = ["right" if name in numeric or name.startswith(("baseline ", "current ")) else "left" for name in rows[0]]
    return tabulate(rows, headers="keys", tablefmt=tablefmt, disable_numparse=True, colalign=align)


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def headline(comparison: Comparison) -> str:
    n, total = len(comparison.regressions), len(comparison.pairs)
    return f"{n} regression{'s' if n != 1 else ''} in {total} pair{'s' if total != 1 else ''}" if n else (
        f"no regression in {total} pair{'s' if total != 1 else ''}")  # fmt: skip


def rule(settings: Settings) -> str:
    if settings.paired:
        return (
            f"Method: {settings.method}. A pair is a regression when the current runs' steps are more than "
            f"{settings.max_slowdown * 100:g}% slower than their partners' (Hodges-Lehmann estimate over the run "
            f"pairs of each run's median per-step ratio) and the slowdown is significant (p ≤ {settings.alpha:g}), "
            f"{accuracy_rule(settings)}, or when current runs fail where baseline runs did not."
        )
    return (
        f"A pair is a regression when {settings.label} is more than {settings.max_slowdown * 100:g}% slower "
        f"and the slowdown is significant (one-sided Mann-Whitney U, p ≤ {settings.alpha:g}), "
        f"{accuracy_rule(settings)}, or when current runs fail where baseline runs did not. Ratio: "
        f"Hodges-Lehmann estimate of current/baseline. Method: {settings.method}."
    )


def _rules(comparison: Comparison) -> list[str]:
    """How the pairs were judged: on time, and on instruction counts where both sides had them."""
    counted = [compare_instructions.rule(comparison.settings.max_instructions_increase)] if comparison.counted else []
    judged = [p for p in comparison.pairs if p.verdict != DIFFERENT_WORK]
    if comparison.counted and all(p.instructions is not None for p in judged):
        return [*counted, f"A pair is also a regression {accuracy_rule(comparison.settings)}, or when current runs "
                          "fail where baseline runs did not."]  # fmt: skip
    return [rule(comparison.settings), *counted]


def _evaluations(comparison: Comparison, tablefmt: str) -> list[str]:
    """run --evaluate: the pairs' evaluation metrics, medians [IQR] of each side and the difference; none: nothing."""
    if not comparison.evaluations:
        return []
    table = tabulate(change_rows(comparison.evaluations), headers="keys", tablefmt=tablefmt, disable_numparse=True)
    return [
        "Evaluation metrics (median [IQR] over ok runs; Δ = current - baseline; mean difference with "
        "Welch's 1 - 2 alpha interval and two-sided p; shown, not judged):",
        "",
        table,
        "",
    ]


def render_text(comparison: Comparison, baseline: str, current: str) -> str:
    lines = [f"baseline: {baseline}", f"current:  {current}", "",
             _table(comparison, "simple"), "", *accuracy_section(comparison, "simple"),
             *_evaluations(comparison, "simple")]  # fmt: skip
    lines += [f"warning: {w}" for w in comparison.warnings]
    lines += [f"note: {n}" for n in comparison.notes]
    lines += [*_rules(comparison), f"result: {headline(comparison)}"]
    return "\n".join(lines) + "\n"


def render_markdown(comparison: Comparison, baseline: str, current: str) -> str:
    """A pull-request comment: headline, table, then warnings and notes as lists."""
    mark = "❌" if comparison.regressions else "✅"
    lines = [f"### {mark} cifar-bench compare: {headline(comparison)}", "",
             f"Baseline `{baseline}` against current `{current}`.", "",
             _table(comparison, "github"), "", *accuracy_section(comparison, "github"),
             *_evaluations(comparison, "github")]  # fmt: skip
    if comparison.warnings:
        lines += ["**Warnings**", "", *(f"- {w}" for w in comparison.warnings), ""]
    if comparison.notes:
        lines += ["**Notes**", "", *(f"- {n}" for n in comparison.notes), ""]
    lines += [f"<sub>{text}</sub>" for text in _rules(comparison)]
    return "\n".join(lines) + "\n"


def render_json(comparison: Comparison, baseline: str, current: str) -> str:
    pairs = []
    for p in comparison.pairs:
        item = asdict(p)
        item["regression"] = p.regression
        if p.decision is not None:
            item["decision"]["significant"] = p.decision.significant
        # The issue-24 fields: accuracy in points, time as a slowdown in percent, each with its detectable size.
        item["accuracy"] = None if p.accuracy is None else compare_accuracy.accuracy_fields(p.accuracy)
        item["time"] = None if p.decision is None else compare_accuracy.time_fields(p.decision, p.time_detectable)
        item.pop("time_detectable")
        item["instructions"] = compare_instructions.fields(p.instructions)
        pairs.append(item)
    data = {
        "baseline": baseline,
        "current": current,
        "regressions": len(comparison.regressions),
        "settings": {**asdict(comparison.settings), "method": _method(comparison)},
        "pairs": pairs,
        "warnings": comparison.warnings,
        "notes": comparison.notes,
        "unjudged": comparison.unjudged,
        "evaluations": [{**asdict(c), "difference": c.difference} for c in comparison.evaluations],
    }
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def _method(comparison: Comparison) -> str:
    """The method the gate used: the time method, or the instructions method where pairs had counts."""
    if comparison.counted:
        return compare_instructions.METHOD
    return comparison.settings.method


#: ``--format`` -> renderer.
RENDERERS: dict[str, Callable[[Comparison, str, str], str]] = {
    "text": render_text,
    "markdown": render_markdown,
    "json": render_json,
}
