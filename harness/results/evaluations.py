"""Evaluation results as readers see them: one column per metric, text for the console, differences for compare.

A record keeps each evaluation under its name (``evaluations.corruptions.metrics.mean_accuracy``); the
reader's frame has one column per metric, named ``EVALUATION.METRIC`` (``corruptions.mean_accuracy``), which
``report`` summarises per workload like its own measures, ``compare`` shows the differences of, and ``plot``
and ``publish`` chart. Tables and details stay in the structured ``evaluations`` column.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from .accuracy_stats import DEFAULT_ALPHA, welch_test

if TYPE_CHECKING:
    import pandas as pd

    from .schema import RunRecord

#: Between an evaluation's name and its metric's in a column name.
SEPARATOR = "."


def column(evaluation: str, metric: str) -> str:
    """The frame's column of one evaluation metric: ``corruptions.mean_accuracy``."""
    return f"{evaluation}{SEPARATOR}{metric}"


def metric_values(section: Any) -> dict[str, float]:
    """A record's ``evaluations`` section as ``{column: value}``, finite numbers only (others read as missing)."""
    values: dict[str, float] = {}
    for name, result in section.items() if isinstance(section, Mapping) else ():
        metrics = result.get("metrics") if isinstance(result, Mapping) else None
        for metric, value in metrics.items() if isinstance(metrics, Mapping) else ():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                values[column(str(name), str(metric))] = float(value)
    return values


def metric_columns(runs: pd.DataFrame) -> dict[str, str]:
    """The evaluation-metric columns some run of ``runs`` has a value in -> their labels, in the order they ran."""
    found: dict[str, str] = {}
    for section in runs.get("evaluations", []):
        for name in metric_values(section):
            if name not in found and runs[name].notna().any():
                found[name] = name.replace(SEPARATOR, " ", 1)
    return found


# -- the console, after a run --------------------------------------------------------------------------------


def summary_lines(record: RunRecord) -> list[str]:
    """What a run's evaluations measured, as the console prints it: metrics and seconds, then each table."""
    lines = []
    for name, result in record.evaluations.items():
        if not result.metrics:
            continue
        metrics = ", ".join(f"{metric} {_short(value)}" for metric, value in result.metrics.items())
        lines.append(f"evaluation {name} ({result.seconds:.1f} s): {metrics}")
        for table, rows in result.tables.items():
            columns = list(dict.fromkeys(c for cells in rows.values() for c in cells))
            body = [[row, *(_short(cells.get(c)) for c in columns)] for row, cells in rows.items()]
            lines.append(f"{name} {table}:")
            lines += tabulate(body, headers=[table, *columns], tablefmt="simple", disable_numparse=True).splitlines()
    return lines


def _short(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


# -- compare: differences with Welch's interval, shown and not judged ----------------------------------------


@dataclass
class EvaluationChange:
    """One evaluation metric of one compared pair: medians of each side, their difference, and the spreads;
    with two runs on a side, Welch's test of the means (as for accuracy; see accuracy_stats.welch_test)."""

    recipe: str
    device: str
    workload: str
    metric: str  # the column: EVALUATION.METRIC
    baseline: float | None  # median over the side's ok runs
    current: float | None
    baseline_iqr: float | None  # interquartile range over the side's ok runs (0 for one run)
    current_iqr: float | None
    baseline_runs: int
    current_runs: int
    # Mean difference (current - baseline) and its 1 - 2 alpha interval, two-sided p; None with one run a side.
    mean_difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None

    @property
    def difference(self) -> float | None:
        """current - baseline, in the metric's own unit; not judged: no threshold, no test."""
        return None if self.baseline is None or self.current is None else self.current - self.baseline


def changes(baseline: pd.DataFrame, current: pd.DataFrame, pairs: Sequence[Any],
            alpha: float = DEFAULT_ALPHA) -> list[EvaluationChange]:  # fmt: skip
    """The evaluation metrics of every pair compare judged (same recipe, device and workload on both sides).

    Metrics are shown, never gated: a robustness or calibration change is the user's to weigh, and the
    metrics differ in direction (accuracy up is good, ECE up is bad)."""
    found = []
    for pair in pairs:
        key = {"recipe": pair.recipe, "device": pair.device, "workload": pair.workload}
        sides = [_ok(runs, key) for runs in (baseline, current)]
        names = dict.fromkeys(n for side in sides for n in metric_columns(side))
        for name in names:
            b, c = (_values(side, name) for side in sides)
            if not b and not c:
                continue
            found.append(EvaluationChange(pair.recipe, pair.device, pair.workload, name, _median(b), _median(c),
                                          _iqr(b), _iqr(c), len(b), len(c), **_welch(b, c, alpha)))  # fmt: skip
    return found


def _welch(b: list[float], c: list[float], alpha: float) -> dict[str, float | None]:
    """The mean difference, its interval and two-sided p when a side has two runs (else nothing measures noise)."""
    if not b or not c or max(len(b), len(c)) < 2:
        return {}
    try:
        test = welch_test(b, c, alpha=alpha)
    except OverflowError:  # a plugin's metric so large that its square is beyond a float: no interval to show
        return {}
    p = None if test.p_drop is None or test.p_gain is None else min(1.0, 2 * min(test.p_drop, test.p_gain))
    return {"mean_difference": test.difference, "ci_low": test.ci_low, "ci_high": test.ci_high, "p_value": p}


def change_rows(found: Sequence[EvaluationChange]) -> list[dict[str, str]]:
    """The changes as table rows of text (compare's text and markdown output)."""
    return [
        {"recipe": c.recipe, "device": c.device, "metric": c.metric.replace(SEPARATOR, " ", 1),
         "runs": f"{c.baseline_runs}/{c.current_runs}", "baseline [IQR]": _spread(c.baseline, c.baseline_iqr),
         "current [IQR]": _spread(c.current, c.current_iqr),
         "Δ": "–" if c.difference is None else f"{c.difference:+.4g}",
         "Δ mean [interval], p": _interval(c)}
        for c in found
    ]  # fmt: skip


def _interval(c: EvaluationChange) -> str:
    if c.mean_difference is None or c.ci_low is None or c.ci_high is None or c.p_value is None:
        return "–"
    return f"{c.mean_difference:+.4g} [{c.ci_low:+.4g}, {c.ci_high:+.4g}], p={c.p_value:.2g}"


def _spread(value: float | None, iqr: float | None) -> str:
    return "–" if value is None else f"{value:.4g} [{iqr:.2g}]"


def _ok(runs: pd.DataFrame, key: Mapping[str, str]) -> pd.DataFrame:
    selected = runs[runs["status"] == "ok"]
    for name, value in key.items():
        selected = selected[selected[name] == value]
    return selected


def _values(runs: pd.DataFrame, name: str) -> list[float]:
    if name not in runs.columns:
        return []
    return [float(v) for v in runs[name] if isinstance(v, (int, float)) and math.isfinite(v)]


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _iqr(values: Sequence[float]) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return 0.0
    quartiles = statistics.quantiles(values, n=4, method="inclusive")
    return quartiles[2] - quartiles[0]
