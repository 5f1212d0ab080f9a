"""``report``'s tables: runs grouped by the work they did, with medians and spreads of each measure.

Medians and interquartile ranges rather than means and standard deviations:
a run slowed by a noisy neighbour moves a mean a long way and a median
hardly at all. Accuracy, which no neighbour moves, also gets its mean, SD, n
and 95% interval across seeds, and time to a target its median and olympic
mean (:mod:`report_accuracy`). Also the table a run or a suite ends with
(:func:`run_table`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from ..errors import UsageError
from ..hooks.components import COMPONENT_KINDS
from . import evaluations, workload
from .defaults import DEFAULT_GROUP_BY, REPORT_FORMATS
from .reader import STRUCTURED, flatten
from .report_accuracy import LABELS as ACCURACY_LABELS
from .report_accuracy import across_seeds
from .schema import RunRecord

if TYPE_CHECKING:
    import pandas as pd


#: Measures summarised by ``report``: column -> label shown in tables.
MEASURES: dict[str, str] = {
    "train_s": "train s",
    "train_img_s": "train img/s",
    "eval_img_s": "eval img/s",
    "test_accuracy_pct": "test acc %",
}

#: Measures shown only when some run has them (energy is measured only where the hardware tells).
ENERGY_MEASURES: dict[str, str] = {
    "energy_j": "energy J",
    "train_img_per_j": "train img/J",
}

FORMATS = REPORT_FORMATS


def group_columns(runs: pd.DataFrame, group_by: Sequence[str]) -> pd.DataFrame:
    """``runs`` with a column for each name in ``group_by``: a run column, a component kind or a hyperparameter.

    A component kind (``model``) groups by the component's name; any other
    name that is not a column is looked up in each run's hyperparameters
    (``lr``, ``momentum``), a run that lacks it showing as ``None``.
    """
    hyperparameters = set().union(*(h for h in runs["hyperparameters"] if isinstance(h, Mapping)))
    added = {}
    for name in group_by:
        if name in runs.columns and name not in STRUCTURED and name not in COMPONENT_KINDS:
            continue
        if name in COMPONENT_KINDS:
            added[name] = runs[f"{name}_component"]
        elif name in hyperparameters:
            added[name] = [h.get(name) if isinstance(h, Mapping) else None for h in runs["hyperparameters"]]
        else:
            columns = {c for c in runs.columns if c not in STRUCTURED and not c.endswith("_component")}
            known = sorted(columns | set(COMPONENT_KINDS) | hyperparameters)
            raise UsageError(
                f"cannot group by {name}: use a column, a component kind or a hyperparameter ({', '.join(known)})"
            )
    return runs.assign(**{k: [_hashable(v) for v in values] for k, values in added.items()})


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def summarize(runs: pd.DataFrame, group_by: Sequence[str] = DEFAULT_GROUP_BY) -> pd.DataFrame:
    """Run count, then median and IQR of each measure, per group.

    Grouped by ``workload`` (the default does), the table gains a ``differs``
    column wherever one recipe covers several workloads, saying what sets
    each apart (``model=resnet18 (resnet)``): rows that look alike by name
    are never alike in work.
    """
    runs = group_columns(runs, group_by)
    keys = list(group_by)
    grouped = runs.assign(**{k: runs[k].astype(str) for k in keys}).groupby(keys, sort=True, dropna=False)
    table = grouped.size().rename("runs").to_frame()
    energy = {c: label for c, label in ENERGY_MEASURES.items() if c in runs.columns and runs[c].notna().any()}
    evaluated = evaluations.metric_columns(runs)  # run --evaluate: "corruptions mean_accuracy" and the like
    for column, label in {**MEASURES, **energy, **evaluated}.items():
        values = grouped[column]
        table[label] = values.median()
        table[f"{label} IQR"] = values.quantile(0.75) - values.quantile(0.25)
    table = table.join(across_seeds(runs, keys))  # mean, SD, n and 95% CI of accuracy; time to target
    table = table.reset_index()
    if "workload" in keys:
        within = "recipe" if "recipe" in keys else None
        differs = _differs(runs, within)
        if any(differs.values()):
            places = table[within] if within else [None] * len(table)
            labels = [differs.get((place, w), "") for place, w in zip(places, table["workload"], strict=True)]
            table.insert(keys.index("workload") + 1, "differs", labels)
    return table


def _differs(runs: pd.DataFrame, within: str | None) -> dict[tuple[Any, str], str]:
    """(recipe, workload key) -> what sets it apart from the recipe's other workloads ("" when it is alone)."""
    labels: dict[tuple[Any, str], str] = {}
    groups = runs.groupby(within, sort=False) if within else [(None, runs)]
    for place, group in groups:
        descriptions = dict(zip(group["workload"], group["workload_description"], strict=True))
        if len(descriptions) < 2:
            continue
        varying = workload.varying(list(descriptions.values()))
        for key, description in descriptions.items():
            labels[place, key] = workload.label(description, varying)
    return labels


def sort_table(table: pd.DataFrame, spec: str | None) -> pd.DataFrame:
    """``--sort COLUMN`` or ``COLUMN:desc``; a column may be named by label or by measure name."""
    if not spec:
        return table
    name, _, order = spec.partition(":")
    if order not in ("", "asc", "desc"):
        raise UsageError(f"--sort {spec}: the order after ':' must be asc or desc")
    column = MEASURES.get(name, name)  # train_img_s and "train img/s" name the same column
    if column not in table.columns and evaluations.SEPARATOR in column:  # corruptions.mean_accuracy: its label
        column = column.replace(evaluations.SEPARATOR, " ", 1)
    if column not in table.columns:
        raise UsageError(f"cannot sort by {name!r}: columns are {', '.join(map(str, table.columns))}")
    return table.sort_values(column, ascending=order != "desc", kind="stable").reset_index(drop=True)


def render(table: pd.DataFrame, fmt: str) -> str:
    """The table in one of :data:`FORMATS`, made by tabulate or pandas.

    Machine formats (csv, json) keep full precision; the others show four
    significant digits without exponents (``11820``, not ``1.182e+04``).
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        return table.to_json(orient="records", indent=2) + "\n"
    tablefmt = {"text": "simple", "markdown": "pipe", "latex": "latex_booktabs"}.get(fmt, fmt)
    table = table.rename(columns=ACCURACY_LABELS)  # "acc mean %" for people; json and csv keep "accuracy_mean"
    shown = table.map(_significant).astype(object)
    shown = shown.where(table.notna(), None)  # NaN prints as an empty cell
    return tabulate(shown, headers="keys", tablefmt=tablefmt, floatfmt="g", showindex=False) + "\n"


def _significant(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return round(value, digits - 1 - math.floor(math.log10(abs(value))))
    return value


# -- the table a run or a suite ends with -------------------------------------------------


def _short(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def run_table(records: Sequence[RunRecord | Mapping[str, Any]], settings: Sequence[str] | None = None) -> str:
    """Median [IQR] per recipe, device and variant; runs that did not finish, with their reason.

    ``records`` are records or their dicts (as read back from files); ``settings``, one label per record,
    also splits the groups (a suite's runs of one recipe may differ in more than device and variant).
    """
    dicts = [r.to_dict() if isinstance(r, RunRecord) else r for r in records]
    import pandas as pd

    runs = pd.DataFrame([flatten(r, Path(str(r.get("run_id")))) for r in dicts])
    keys = ["recipe", "device", "variant", "workload", *(["setting"] if settings is not None else [])]
    if settings is not None:
        runs["setting"] = list(settings)
    rows = []
    ok = runs[runs["status"] == "ok"]
    shown = [k for k in keys if k != "workload"]  # split by it, but named by what differs (if anything)
    if len(ok):
        for _, group in summarize(ok, keys).iterrows():
            # What sets workloads apart, unless a suite's setting labels already say it.
            differs = ["differs"] if "differs" in group and settings is None else []
            row = {k: group[k] for k in (*shown, *differs, "runs")}
            row["status"] = "ok"
            for label in MEASURES.values():
                spread = f" [{_short(group[label + ' IQR'])}]" if group["runs"] > 1 else ""
                row[label] = f"{_short(group[label])}{spread}"
            rows.append(row)
    for _, run in runs[runs["status"] != "ok"].iterrows():
        rows.append({k: run[k] for k in shown} | {"runs": 1, "status": f"{run['status']}: {run['error']}"})
    note = "median [IQR] over repeats" if any(r.get("runs", 1) > 1 for r in rows) else ""
    return tabulate(rows, headers="keys", tablefmt="simple", disable_numparse=True) + (f"\n({note})" if note else "")
