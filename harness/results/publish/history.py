"""A results site's history: runs split into series (same work, device and machine; see ``series.py``),
commits in order (a run without one at its start time), each commit judged against the one before it as
``compare`` judges, and each series' change points (``regressions.py``)."""

from __future__ import annotations

import hashlib
import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import UsageError
from ..compare import PairResult, Settings, judge_pair
from ..regressions import Change, series_changes
from ..regressions import Settings as ChangeSettings
from ..series import (
    MACHINE_FIELDS,
    by_series,
    has_commit,
    machine_of,
    series_key,
    slot_label,
    slot_runs,
    workload_of,
)

__all__ = ["MACHINE_FIELDS", "CommitResult", "History", "Series", "build_history", "machine_of", "series_key",
           "workload_of"]  # fmt: skip

if TYPE_CHECKING:  # pandas is imported when records are read: the command line is built without it
    import pandas as pd

# -- the history --------------------------------------------------------------------


@dataclass
class CommitResult:
    """One commit of one series (or one run that records no commit): its runs (any status) and the verdict
    against the commit before."""

    commit: str  # the slot: a commit hash, or "no commit <run id>" (see series.py)
    first_run: str  # the earliest started_at of the commit's runs, over every series
    runs: pd.DataFrame
    versus_previous: PairResult | None = None

    @property
    def label(self) -> str:
        """A short hash, or "no commit"."""
        return slot_label(self.commit)

    @property
    def has_commit(self) -> bool:
        return has_commit(self.commit)

    @property
    def ok(self) -> pd.DataFrame:
        return self.runs[self.runs.status == "ok"]

    @property
    def regression(self) -> bool:
        return self.versus_previous is not None and self.versus_previous.regression

    @property
    def regressed(self) -> set[str]:
        """The measures whose change made this commit a regression (none when only failed runs did)."""
        pair = self.versus_previous
        if pair is None or not pair.regression:
            return set()
        measures = set()
        if pair.decision is not None and pair.decision.regression:
            measures |= {"train_s", "train_img_s"}
        if pair.accuracy is not None and pair.accuracy.verdict.regression:  # a significant drop beyond the threshold
            measures.add("test_accuracy_pct")
        return measures

    def quartiles(self, column: str) -> tuple[float, float, float] | None:
        import pandas as pd

        values = pd.to_numeric(self.ok[column], errors="coerce").dropna()
        if values.empty:
            return None
        q25, q50, q75 = values.quantile([0.25, 0.5, 0.75])
        return float(q25), float(q50), float(q75)

    def median(self, column: str) -> float | None:
        quartiles = self.quartiles(column)
        return None if quartiles is None else quartiles[1]


@dataclass
class Series:
    key: tuple[str, ...]
    slug: str  # the page's file name, without .html
    recipe: str
    device: str
    variant: str
    machine: str
    runs: pd.DataFrame
    commits: list[CommitResult]
    changes: list[Change] = field(default_factory=list)  # change points of its measures, oldest first

    @property
    def title(self) -> str:
        return f"{self.recipe} on {self.device}, {self.variant}"

    @property
    def latest(self) -> CommitResult:
        return self.commits[-1]

    @property
    def regressions(self) -> list[CommitResult]:
        return [c for c in self.commits if c.regression]

    def index_of(self, slot: str) -> int:
        """Where a slot of the history is on this series' axis (its commits, oldest first)."""
        return next(i for i, c in enumerate(self.commits) if c.commit == slot)


@dataclass
class History:
    series: list[Series]
    commits: list[str]  # every commit, oldest first
    runs: int
    notes: list[str]
    settings: Settings
    change_settings: ChangeSettings = field(default_factory=ChangeSettings)
    first_run: dict[str, str] = field(default_factory=dict)  # slot -> the earliest start of its runs


def build_history(runs: pd.DataFrame, settings: Settings | None = None, notes: Sequence[str] = (),
                  change_settings: ChangeSettings | None = None) -> History:  # fmt: skip
    """Split runs (as :func:`load_runs` gives them) into series, judge each commit against the one before,
    and find each series' change points.

    ``settings`` are compare's (its defaults unless given): a commit is marked when compare would call it a
    regression against the commit before. ``change_settings``: what a change point must be to be a regression
    (``regressions``' defaults unless given). Runs that record no commit are kept, each at its own place.
    """
    settings = settings or Settings()
    change_settings = change_settings or ChangeSettings()
    slotted = slot_runs(runs)
    notes = [*notes, *slotted.notes]
    if not (slotted.runs["status"] == "ok").any():
        raise UsageError("no run finished ok: nothing to publish")
    position = {slot: i for i, slot in enumerate(slotted.order)}
    series, unfinished = [], 0
    for key, group, machine in by_series(slotted.runs):
        if not (group["status"] == "ok").any():
            unfinished += 1  # nothing to draw: no run of this series ever finished
            continue
        first = group.iloc[0]
        pair_key = (str(first["recipe"]), str(first["device"]), str(first["variant"]))
        commits: list[CommitResult] = []
        for slot in sorted(group["slot"].unique(), key=position.__getitem__):
            result = CommitResult(slot, slotted.first_run[slot], group[group["slot"] == slot])
            if commits:
                result.versus_previous = judge_pair(pair_key, commits[-1].runs, result.runs, settings)
            commits.append(result)
        changes = series_changes(group, position, change_settings)
        series.append(Series(key, _slug(pair_key[:2], key), *pair_key, machine, group, commits, changes))
    if unfinished:
        notes.append(f"left out {unfinished} workload(s) none of whose runs finished ok")
    series.sort(key=lambda s: (s.recipe, s.device, s.variant, s.machine, s.key))
    return History(series, slotted.order, len(slotted.runs), notes, settings, change_settings, slotted.first_run)


def _slug(words: Iterable[str], key: tuple[str, ...]) -> str:
    digest = hashlib.sha1(repr(key).encode()).hexdigest()[:10]
    return "-".join([*(re.sub(r"[^a-z0-9]+", "_", w.lower()).strip("_") or "x" for w in words), digest])


def _seed_order(seed: Any) -> float:
    """Seeds in numeric order; anything that is not a number (an odd record) after them."""
    return float(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else math.inf


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def series_label(s: Series) -> str:
    return f"{s.device}, {s.variant}, {s.machine}"


def verdict_text(commit: CommitResult) -> str:
    pair = commit.versus_previous
    if pair is None:
        return "first commit"
    why = "; ".join(pair.reasons)
    return f"{pair.verdict} vs previous commit" + (f": {why}" if why else "")
