"""``cifar-bench plot``'s second row, drawn when some run made evaluations after training (``run --evaluate``).

* a **reliability diagram** (runs with the ``calibration`` evaluation): per series, each confidence bin's
  accuracy against its mean confidence, the bins of all the series' runs pooled (weighted by images); the
  diagonal is perfect calibration, and the legend gives the median ECE;
* **accuracy against corruption severity** (runs with ``corruptions``): per series, the median over runs of
  the mean accuracy over the benchmark corruptions at each severity, clean accuracy (the same images,
  uncorrupted) at severity 0;
* **evaluation metrics**: every other evaluation's metrics, a point per run (a third-party evaluation
  shows here without any code of its own).

Panels are chosen from what the records hold, so records without evaluations draw the one-row figure as
before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .evaluations import metric_columns

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

#: One panel: draws on its axes from the runs (with a ``series`` column) and each series' colour.
Panel = Callable[["Axes", "pd.DataFrame", dict], None]

#: Evaluations with a panel of their own; their metrics are left out of the generic panel.
OWN_PANELS = ("calibration", "corruptions")


def panels(runs: pd.DataFrame) -> list[Panel]:
    """The evaluation panels these runs call for (none without evaluations)."""
    chosen: list[Panel] = []
    if any(_details(section, "calibration").get("bins") for section in runs.get("evaluations", [])):
        chosen.append(reliability_diagram)
    if any(_details(section, "corruptions").get("per_severity") for section in runs.get("evaluations", [])):
        chosen.append(corruption_severity)
    if _other_metrics(runs):
        chosen.append(other_metrics)
    return chosen


def _details(section: Any, name: str) -> Mapping[str, Any]:
    result = section.get(name) if isinstance(section, Mapping) else None
    details = result.get("details") if isinstance(result, Mapping) else None
    return details if isinstance(details, Mapping) else {}


def reliability_diagram(ax: Axes, runs: pd.DataFrame, colour: dict) -> None:
    """Accuracy against confidence per bin, pooled over each series' runs, with the diagonal."""
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfect calibration")
    for series, group in runs.groupby("series"):
        pooled: dict[int, list[float]] = {}  # bin -> [images, confidence sum, correct sum]
        eces = [v for v in group.get("calibration.ece", []) if isinstance(v, float) and math.isfinite(v)]
        for section in group["evaluations"]:
            for i, b in enumerate(_details(section, "calibration").get("bins") or []):
                if isinstance(b, Mapping) and b.get("images"):
                    total = pooled.setdefault(i, [0, 0.0, 0.0])
                    total[0] += b["images"]
                    total[1] += b["confidence"] * b["images"]
                    total[2] += b["accuracy"] * b["images"]
        if not pooled:
            continue
        bins = sorted(pooled)
        xs = [pooled[i][1] / pooled[i][0] for i in bins]
        ys = [pooled[i][2] / pooled[i][0] for i in bins]
        ece = f", ECE {_median(eces):.3f}" if eces else ""
        ax.plot(xs, ys, color=colour[series], marker="o", ms=4, lw=1.5, label=f"{series}{ece}")
    ax.set(title="reliability diagram (calibration, 15 equal-width bins)", xlabel="mean confidence in bin",
           ylabel="accuracy in bin", xlim=(0, 1), ylim=(0, 1))  # fmt: skip
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)


def corruption_severity(ax: Axes, runs: pd.DataFrame, colour: dict) -> None:
    """Mean accuracy over the benchmark corruptions at each severity (clean at 0), median over each series' runs."""
    for series, group in runs.groupby("series"):
        levels: dict[int, list[float]] = {}
        for section in group["evaluations"]:
            details = _details(section, "corruptions")
            per_severity = details.get("per_severity")
            if not isinstance(per_severity, Mapping) or not isinstance(details.get("clean_accuracy"), float):
                continue
            levels.setdefault(0, []).append(details["clean_accuracy"])
            for severity, value in per_severity.items():
                levels.setdefault(int(severity), []).append(value)
        if levels:
            xs = sorted(levels)
            ax.plot(xs, [100 * _median(levels[x]) for x in xs], color=colour[series], marker="o", lw=1.5)
    ax.set(title="accuracy under corruption (mean over benchmark corruptions)", xlabel="severity (0: clean)",
           ylabel="accuracy (%)")  # fmt: skip
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)


def _other_metrics(runs: pd.DataFrame) -> list[str]:
    return [c for c in metric_columns(runs) if c.split(".", 1)[0] not in OWN_PANELS]


def other_metrics(ax: Axes, runs: pd.DataFrame, colour: dict) -> None:
    """Every other evaluation metric, one column of points per metric, a point per run."""
    names = _other_metrics(runs)
    for i, name in enumerate(names):
        for series, group in runs.groupby("series"):
            values = [v for v in group[name] if isinstance(v, float) and math.isfinite(v)]
            ax.scatter([i] * len(values), values, color=colour[series], s=30, alpha=0.8)
    ax.set_xticks(range(len(names)), [n.replace(".", "\n", 1) for n in names], fontsize=8)
    ax.set(title="evaluation metrics (a point per run)", ylabel="value")
    ax.grid(alpha=0.3, axis="y")


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
