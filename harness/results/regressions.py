"""The change points of every series in a set of records: what ``cifar-bench regressions`` lists and
``publish`` marks.

Series are grouped as ``publish`` groups them (workload x device x machine, see ``series.py``); the
measures of each are searched for change points (``changepoints.detect``): train seconds, train images/s
and test accuracy, or, for a series of counted runs (``run --measure instructions``: a workload of its
own), instructions per training step and test accuracy (their times are valgrind's). A change point is a
*regression* when it goes the worse way (slower, fewer images/s, more instructions, lower accuracy) by more
than a threshold, its interval wholly on that side (``changepoints.is_regression``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import UsageError
from .changepoints import COUNTED, MEASURES, TIMED, ChangePoint, detect, is_regression
from .defaults import (
    ALPHA,
    DEFAULT_MAX_ACCURACY_DROP,
    DEFAULT_MAX_INSTRUCTIONS_INCREASE,
    DEFAULT_MAX_SLOWDOWN,
    MIN_SEGMENT,
    Method,
)
from .series import by_series, has_commit, slot_label, slot_runs

if TYPE_CHECKING:
    import pandas as pd

#: How each measure is named in tables, and the unit of its change.
LABELS = {"train_s": "train s", "train_img_s": "train img/s", "test_accuracy_pct": "test acc %",
          "instructions_per_step": "instr/step"}  # fmt: skip
#: Characters of a commit named by ``--since`` that must match, at least.
MIN_PREFIX = 4


@dataclass(frozen=True)
class Settings:
    """What counts as a regression, and how change points are found (see ``changepoints.detect``)."""

    max_slowdown: float = DEFAULT_MAX_SLOWDOWN  # a fraction: 0.05 is 5% slower
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP  # percentage points
    max_instructions_increase: float = DEFAULT_MAX_INSTRUCTIONS_INCREASE  # a fraction: 0.01 is 1% more
    method: Method = "t"
    alpha: float = ALPHA
    min_segment: int = MIN_SEGMENT

    def threshold(self, measure: str) -> float:
        if measure == COUNTED:
            return self.max_instructions_increase
        return self.max_slowdown if MEASURES[measure].relative else self.max_accuracy_drop


@dataclass(frozen=True)
class Change:
    """A change point of one measure of one series, placed in the history."""

    measure: str  # a key of changepoints.MEASURES
    point: ChangePoint
    regression: bool
    position: int  # index of the slot where it begins, in the history's order (oldest 0)

    @property
    def slot(self) -> str:
        return str(self.point.group)

    def describe(self) -> str:
        """One line: the change with its interval, p-value and where it began (the tooltips' text)."""
        p = self.point
        where = slot_label(self.slot) if p.earliest == p.latest else _range(p)
        kind = "regression" if self.regression else ("better" if p.direction != MEASURES[self.measure].worse else "")
        return (f"change point in {LABELS[self.measure]}: {change_text(p)} {interval_text(p)}, p = {p.p_value:.2g}; "
                f"begins at {slot_label(self.slot)} (could have begun at {where})"
                + (f" – {kind}" if kind else ""))  # fmt: skip


@dataclass
class SeriesChanges:
    """One series (as ``publish`` draws it) and the change points of its measures, oldest first."""

    key: tuple[str, ...]
    recipe: str
    device: str
    variant: str
    machine: str
    changes: list[Change] = field(default_factory=list)


@dataclass
class Regressions:
    series: list[SeriesChanges]
    order: list[str]  # every slot (commit, or a run without one), oldest first
    first_run: dict[str, str]  # slot -> the earliest start of its runs
    notes: list[str]
    settings: Settings


def change_text(p: ChangePoint) -> str:
    """``+8.1%`` for a ratio, ``-1.20 pts`` for a difference in accuracy points."""
    return f"{(p.magnitude - 1) * 100:+.1f}%" if p.relative else f"{p.magnitude:+.2f} pts"


def interval_text(p: ChangePoint) -> str:
    if p.low is None or p.high is None:
        return "[no interval]"
    if p.relative:
        return f"[{(p.low - 1) * 100:+.1f}%, {(p.high - 1) * 100:+.1f}%]"
    return f"[{p.low:+.2f}, {p.high:+.2f}]"


def _range(p: ChangePoint) -> str:
    return f"{slot_label(str(p.earliest))}..{slot_label(str(p.latest))}"


def series_changes(runs: pd.DataFrame, position: Mapping[str, int], settings: Settings) -> list[Change]:
    """Change points of each measure of one series' runs (any status; ok ones are used), oldest first.

    ``runs`` need a ``slot`` column; ``position`` gives each slot's place in the history.
    """
    import pandas as pd

    ok = runs[runs["status"] == "ok"]
    ok = ok.assign(_at=ok["slot"].map(position)).sort_values(["_at", "started_at", "run_id"], kind="stable")
    changes = []
    for measure in searched(ok):
        how = MEASURES[measure]
        values = pd.to_numeric(ok[measure], errors="coerce")
        usable = values.notna() & values.map(lambda v: abs(v) < float("inf")) & ((values > 0) | (not how.relative))
        points = detect(list(values[usable]), list(ok["slot"][usable]), relative=how.relative, method=settings.method,
                        alpha=settings.alpha, min_segment=settings.min_segment, min_change=how.resolution,
                        ranks=how.ranks)  # fmt: skip
        for p in points:
            regression = is_regression(p, worse=how.worse, threshold=settings.threshold(measure))
            changes.append(Change(measure, p, regression, position[str(p.group)]))
    return sorted(changes, key=lambda c: (c.position, list(MEASURES).index(c.measure)))


def searched(runs: pd.DataFrame) -> list[str]:
    """The measures searched in one series: its times, or, when its runs were counted, its instruction counts."""
    import pandas as pd

    counted = COUNTED in runs and pd.to_numeric(runs[COUNTED], errors="coerce").notna().any()
    skip = TIMED if counted else (COUNTED,)
    return [m for m in MEASURES if m not in skip and m in runs]


def find_regressions(runs: pd.DataFrame, settings: Settings | None = None, notes: Sequence[str] = ()) -> Regressions:
    """Every series of ``runs`` (as ``load_runs`` gives them) with its change points."""
    settings = settings or Settings()
    slotted = slot_runs(runs)
    if not (slotted.runs["status"] == "ok").any():
        raise UsageError("no run finished ok: no history to search")
    position = {slot: i for i, slot in enumerate(slotted.order)}
    found = []
    for key, group, machine in by_series(slotted.runs):
        if not (group["status"] == "ok").any():
            continue
        first = group.iloc[0]
        found.append(SeriesChanges(key, str(first["recipe"]), str(first["device"]), str(first["variant"]), machine,
                                   series_changes(group, position, settings)))  # fmt: skip
    found.sort(key=lambda s: (s.recipe, s.device, s.variant, s.machine, s.key))
    return Regressions(found, slotted.order, slotted.first_run, [*notes, *slotted.notes], settings)


# -- the window: --since COMMIT, --last K --------------------------------------------------------------


def window_start(order: Sequence[str], since: str | None = None, last: int | None = None) -> int:
    """Index of the oldest slot in the window: after commit ``since`` (a hash or a prefix of at least
    ``MIN_PREFIX`` characters), or the newest ``last`` slots; 0 (the whole history) when neither is given."""
    if since is not None and last is not None:
        raise UsageError("--since and --last both limit the window: give one")
    if last is not None:
        if last < 1:
            raise UsageError(f"--last must be at least 1 commit, got {last}")
        return max(0, len(order) - last)
    if since is None:
        return 0
    wanted = since.strip().lower()
    if len(wanted) < MIN_PREFIX:
        raise UsageError(f"--since {since!r}: give at least {MIN_PREFIX} characters of the commit")
    matches = [i for i, slot in enumerate(order) if has_commit(slot) and slot.lower().startswith(wanted)]
    if not matches:
        raise UsageError(f"--since {since}: no run records that commit")
    if len({order[i] for i in matches}) > 1:
        raise UsageError(f"--since {since}: more than one commit starts so; give more of it")
    return matches[0] + 1


def in_window(found: Regressions, start: int) -> list[tuple[SeriesChanges, Change]]:
    """The change points that begin at or after slot ``start``, newest first."""
    listed = [(s, c) for s in found.series for c in s.changes if c.position >= start]
    measures = list(MEASURES)
    return sorted(listed, key=lambda sc: (-sc[1].position, sc[0].recipe, sc[0].device, sc[0].variant,
                                          sc[0].machine, measures.index(sc[1].measure)))  # fmt: skip


def _percent(ratio: float | None) -> float | None:
    return None if ratio is None else (ratio - 1) * 100


def _same(value: float | None) -> float | None:
    return value


#: Throughput is images / train seconds: a change of it at the commit where train time changed is the same event.
SAME_EVENT = {"train_img_s": "train_s"}


def table(found: Regressions, start: int) -> pd.DataFrame:
    """One row per change in the window, newest first: where it begins, the series, the change.

    A change of images/s at the commit where train time changed in the same series is the same change seen
    through ``images / seconds``: it joins that row (its measure reads "train s, train img/s", and it is a
    regression if either is) rather than listing the one event twice.
    """
    import pandas as pd

    rows: dict[tuple, dict] = {}
    for s, c in in_window(found, start):
        twin = (s.key, c.slot, SAME_EVENT.get(c.measure))
        if twin in rows:
            rows[twin]["measure"] += f", {LABELS[c.measure]}"
            rows[twin]["regression"] = rows[twin]["regression"] or ("REGRESSION" if c.regression else "")
            continue
        rows[(s.key, c.slot, c.measure)] = _row(found, s, c)
    columns = ["#", "begins at", "could have begun", "recipe", "device", "variant", "machine", "measure", "before",
               "after", "change", "low", "high", "unit", "p", "regression", "commit", "first run"]  # fmt: skip
    return pd.DataFrame(list(rows.values()), columns=columns)


def _row(found: Regressions, s: SeriesChanges, c: Change) -> dict:
    p = c.point
    shift = _percent if p.relative else _same  # a ratio as percent, a difference in points as it is
    return {
        "#": c.position + 1,
        "begins at": slot_label(c.slot),
        "could have begun": slot_label(c.slot) if p.earliest == p.latest else _range(p),
        "recipe": s.recipe, "device": s.device, "variant": s.variant, "machine": s.machine,
        "measure": LABELS[c.measure],
        "before": p.before, "after": p.after,
        "change": shift(p.magnitude), "low": shift(p.low), "high": shift(p.high),
        "unit": "%" if p.relative else "pts",
        "p": p.p_value,
        "regression": "REGRESSION" if c.regression else "",
        "commit": c.slot if has_commit(c.slot) else "",
        "first run": found.first_run.get(c.slot, ""),
    }  # fmt: skip
