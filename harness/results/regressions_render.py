"""``cifar-bench regressions``' output: the change points as a table in ``report``'s formats, with a summary
line in the formats people read (csv and json are the table alone, full precision)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .regressions import Regressions
from .report import render as render_table

if TYPE_CHECKING:
    import pandas as pd

#: Formats that are data for a program: the table alone, every column, full precision.
MACHINE_FORMATS = ("csv", "json")
#: Columns a person reads: the change with its interval as one cell.
SHOWN = ["#", "begins at", "could have begun", "recipe", "device", "variant", "machine", "measure", "before",
         "after", "change", "p", "regression"]  # fmt: skip


def render(rows: pd.DataFrame, found: Regressions, start: int, fmt: str) -> str:
    """The table of change points (``regressions.table``) in ``fmt``, under a line saying what was searched."""
    if fmt in MACHINE_FORMATS:
        return render_table(rows, fmt)
    summary = _summary(rows, found, start)
    if rows.empty:
        return summary + "\n"
    shown = rows.assign(change=[_change(r) for r in rows.to_dict("records")])
    columns = [*SHOWN, "first run"] if (rows["commit"] == "").any() else SHOWN
    return f"{summary}\n\n{render_table(shown[columns], fmt)}{_rule(found)}\n"


def _change(row: dict) -> str:
    unit = row["unit"]
    value = f"{row['change']:+.1f}%" if unit == "%" else f"{row['change']:+.2f} pts"
    if row["low"] is None or row["high"] is None or row["low"] != row["low"]:  # None or NaN: no interval
        return value
    digits = 1 if unit == "%" else 2
    return f"{value} [{row['low']:+.{digits}f}, {row['high']:+.{digits}f}]"


def _summary(rows: pd.DataFrame, found: Regressions, start: int) -> str:
    slots = len(found.order)
    window = "the whole history" if start == 0 else f"the newest {slots - start} of them"
    regressions = int((rows["regression"] != "").sum())
    return (f"{len(rows)} change(s), {regressions} regression(s), beginning in {window}: "
            f"{len(found.series)} series over {slots} commit(s) (runs without a commit count one each)")  # fmt: skip


def _rule(found: Regressions) -> str:
    s = found.settings
    return (f"\nchange: after / before as a percentage (accuracy: points), with its 95% interval; regression: "
            f"slower or fewer images/s by more than {s.max_slowdown:.0%}, more instructions per step (counted runs) "
            f"by more than {s.max_instructions_increase:.0%}, or accuracy down more than {s.max_accuracy_drop:g} "
            "points, the interval wholly on that side. Change points: E-Divisive, "
            f"{'a t-test of the commit medians' if s.method == 't' else 'shuffled commits'} at {s.alpha:g}, "
            f"at least {s.min_segment} commits a side.")  # fmt: skip
