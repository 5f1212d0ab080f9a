"""A results site's history: runs split into series (same work, device and machine), commits in order,
each commit judged against the one before it as ``compare`` judges."""

from __future__ import annotations

import hashlib
import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import UsageError
from ..compare import PairResult, Settings, judge_pair

if TYPE_CHECKING:  # pandas is imported when records are read: the command line is built without it
    import pandas as pd

#: What keeps machines apart: two CPU or accelerator models are never one series.
MACHINE_FIELDS = ("cpu", "device_name")


# -- grouping -----------------------------------------------------------------------


def workload_of(row: Mapping[str, Any]) -> str:
    """The identity of the work a run did (see workload.py): runs with the same one did the same work.

    ``load_runs`` computes it for every record, older ones included, so that
    the site groups exactly as ``report`` and ``compare`` do.
    """
    return str(row["workload"])


def machine_of(row: Mapping[str, Any]) -> str:
    """The machine's label: the accelerator's model for a GPU run, else the CPU's."""
    cpu, device_name = (str(row.get(name) or "unknown") for name in MACHINE_FIELDS)
    return cpu if device_name in ("cpu", cpu) or row.get("device") == "cpu" else f"{device_name} ({cpu})"


def series_key(row: Mapping[str, Any]) -> tuple[str, ...]:
    """Runs with equal keys are one line on a chart: same work, same device, same machine."""
    return (workload_of(row), str(row.get("device")), *(str(row.get(name)) for name in MACHINE_FIELDS))


# -- the history --------------------------------------------------------------------


@dataclass
class CommitResult:
    """One commit of one series: its runs (any status) and the verdict against the commit before."""

    commit: str
    first_run: str  # the earliest started_at of the commit's runs, over every series
    runs: pd.DataFrame
    versus_previous: PairResult | None = None

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

    @property
    def title(self) -> str:
        return f"{self.recipe} on {self.device}, {self.variant}"

    @property
    def latest(self) -> CommitResult:
        return self.commits[-1]

    @property
    def regressions(self) -> list[CommitResult]:
        return [c for c in self.commits if c.regression]


@dataclass
class History:
    series: list[Series]
    commits: list[str]  # every commit, oldest first
    runs: int
    notes: list[str]
    settings: Settings


def build_history(runs: pd.DataFrame, settings: Settings | None = None, notes: Sequence[str] = ()) -> History:
    """Split runs (as :func:`load_runs` gives them) into series and judge each commit against the one before.

    ``settings`` are compare's (its defaults unless given): a commit is marked when compare would call it a
    regression against the commit before.
    """
    settings = settings or Settings()
    notes = list(notes)
    references = runs["role"] == "reference"
    if references.any():
        notes.append(f"left out {int(references.sum())} reference run(s) made beside other runs by --reference")
    runs = runs[~references]
    committed = runs["git_commit"].map(_present)
    if (~committed).any():
        notes.append(f"left out {int((~committed).sum())} run(s) that record no git commit: they have no place "
                     "in a history")  # fmt: skip
    runs = runs[committed]
    if not (runs["status"] == "ok").any():
        raise UsageError("no run that finished ok records a git commit: nothing to publish")
    runs = runs.assign(git_commit=runs["git_commit"].astype(str), started_at=runs["started_at"].fillna("").astype(str))
    first_run = runs.groupby("git_commit")["started_at"].min()
    order = sorted(first_run.index, key=lambda c: (first_run[c], c))
    position = {commit: i for i, commit in enumerate(order)}
    rows = runs.to_dict("records")
    runs = runs.assign(_series=[series_key(r) for r in rows], _machine=[machine_of(r) for r in rows])

    series, unfinished = [], 0
    for key, group in runs.groupby("_series", sort=False):
        if not (group["status"] == "ok").any():
            unfinished += 1  # nothing to draw: no run of this series ever finished
            continue
        first = group.iloc[0]
        pair_key = (str(first["recipe"]), str(first["device"]), str(first["variant"]))
        commits: list[CommitResult] = []
        for commit in sorted(group["git_commit"].unique(), key=position.__getitem__):
            result = CommitResult(commit, first_run[commit], group[group["git_commit"] == commit])
            if commits:
                result.versus_previous = judge_pair(pair_key, commits[-1].runs, result.runs, settings)
            commits.append(result)
        series.append(Series(key, _slug(pair_key[:2], key), *pair_key, str(first["_machine"]), group, commits))
    if unfinished:
        notes.append(f"left out {unfinished} workload(s) none of whose runs finished ok")
    series.sort(key=lambda s: (s.recipe, s.device, s.variant, s.machine, s.key))
    return History(series, order, len(runs), notes, settings)


def _slug(words: Iterable[str], key: tuple[str, ...]) -> str:
    digest = hashlib.sha1(repr(key).encode()).hexdigest()[:10]
    return "-".join([*(re.sub(r"[^a-z0-9]+", "_", w.lower()).strip("_") or "x" for w in words), digest])


def _seed_order(seed: Any) -> float:
    """Seeds in numeric order; anything that is not a number (an odd record) after them."""
    return float(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else math.inf


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and str(value) != ""


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
