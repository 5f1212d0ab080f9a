"""Which runs form one history, and in what order: the grouping ``publish`` and ``regressions`` share.

A series is the runs of one workload on one device and one machine (runs from two machines differ for
reasons other than the code, so they are never one line). Its runs sit at *slots* along the history: a
slot is a git commit, or, for a run that records no commit (made outside a repository), the run alone.
Slots are ordered by the start of their earliest run over every series, so runs of a newer commit must be
made after those of an older one, as CI does; a run without a commit is placed by its own start time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported when records are read: the command line is built without it
    import pandas as pd

#: What keeps machines apart: two CPU or accelerator models are never one series.
MACHINE_FIELDS = ("cpu", "device_name")
#: How the slot of a run without a commit begins; no git commit hash can (a hash is hexadecimal).
NO_COMMIT = "no commit"
#: Characters of a commit hash shown on charts and in tables.
SHORT_HASH = 8


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


def present(value: Any) -> bool:
    """Whether a record's field holds something (not None, NaN or an empty string)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and str(value) != ""


def slot_of(commit: Any, run_id: Any) -> str:
    """The slot of a run: its commit, or ``"no commit <run id>"`` for a run that records none."""
    return str(commit) if present(commit) else f"{NO_COMMIT} {run_id}"


def has_commit(slot: str) -> bool:
    return not slot.startswith(NO_COMMIT)


def slot_label(slot: str) -> str:
    """How a slot is named on an axis or in a table: a short hash, or "no commit"."""
    return slot[:SHORT_HASH] if has_commit(slot) else NO_COMMIT


def axis_label(slot: str, started_at: str) -> str:
    """A slot's label under a chart: a short hash, or "no commit" over its run's start (month-day hour:minute)."""
    if has_commit(slot) or len(started_at) < 16:
        return slot_label(slot)
    return f"{NO_COMMIT}\n{started_at[5:16].replace('T', ' ')}"


@dataclass
class Slotted:
    """Runs with a ``slot`` and a ``started_at`` string each, the slots in history order, and what was left out."""

    runs: pd.DataFrame
    order: list[str]  # every slot, oldest first
    first_run: dict[str, str]  # slot -> the earliest start of its runs
    notes: list[str]


def slot_runs(runs: pd.DataFrame) -> Slotted:
    """Runs (as ``load_runs`` gives them) placed at their slots; ``--reference`` runs left out with a note.

    Reference runs were timed taking turns with another run and are not like the others. Runs without a
    commit are kept, each at a slot of its own placed by its start time, and counted in a note.
    """
    notes = []
    references = runs["role"] == "reference"
    if references.any():
        notes.append(f"left out {int(references.sum())} reference run(s) made beside other runs by --reference")
    runs = runs[~references]
    loose = ~runs["git_commit"].map(present)
    if loose.any():
        notes.append(f"{int(loose.sum())} run(s) record no git commit: each is placed by its start time and "
                     f"shown as '{NO_COMMIT}'")  # fmt: skip
    started = runs["started_at"].map(lambda v: str(v) if present(v) else "")
    slots = [slot_of(c, r) for c, r in zip(runs["git_commit"], runs["run_id"], strict=True)]
    runs = runs.assign(slot=slots, started_at=started)
    first_run = runs.groupby("slot")["started_at"].min().to_dict() if len(runs) else {}
    order = sorted(first_run, key=lambda s: (first_run[s], s))
    return Slotted(runs, order, first_run, notes)


def by_series(runs: pd.DataFrame) -> Iterator[tuple[tuple[str, ...], pd.DataFrame, str]]:
    """Runs split into series, in the order first seen: (key, the series' runs, its machine's label) each."""
    rows = runs.to_dict("records")
    keyed = runs.assign(_series=[series_key(r) for r in rows])
    for key, group in keyed.groupby("_series", sort=False):
        yield key, group.drop(columns="_series"), machine_of(group.iloc[0])
