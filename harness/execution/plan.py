"""The one execution layer: a plan of runs, a backend that runs them, and :func:`execute`, the one loop.

A :class:`Plan` is a list of planned runs (each a :class:`~cifar_bench.training.config.RunConfig`,
optionally with a reference run beside it) and where their records go. A backend runs it and yields an
:class:`Outcome` per planned run, as each ends: in this process (``inprocess.py``), as data-parallel ranks
under torchrun (``torchrun.py``), as tasks on a Ray cluster (``ray.py``), or taking turns with another
install (``ab_side.py``). :func:`execute` is what every command, suite, API call and benchmark runs: it
completes each record, hands it to ``Session.finish`` (``run_end`` observers, then the one write) and stops
at the first interrupted run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..results.schema import ReferenceInfo, RunRecord, TimeRatios
from ..training.config import RunConfig
from ..training.session import Session
from ..training.state import RunResult

#: How a reference run takes turns with its candidate: step by step in one process, or one run after the other.
INTERLEAVES = ("step", "run")


@dataclass(frozen=True)
class PlannedRun:
    """One run to make, and the reference run to make beside it, if any (``run --reference``)."""

    config: RunConfig
    reference: RunConfig | None = None
    interleave: str = "step"  # with a reference: see INTERLEAVES

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "interleave": self.interleave,
                "reference": None if self.reference is None else self.reference.to_dict()}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlannedRun:
        reference = data.get("reference")
        return cls(RunConfig.from_dict(data["config"]), None if reference is None else RunConfig.from_dict(reference),
                   data.get("interleave", "step"))  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """Runs to make, in order, and where their records go."""

    runs: tuple[PlannedRun, ...]
    results_dir: Path | None = None  # None: write nothing (the Python API's default; ranks other than 0)
    # A device found absent skips its later runs (a command's repeats would each say the same); a suite
    # records every run it lists instead.
    skip_absent_device: bool = True
    # A run refused as bad input (its data missing, say) is recorded as failed and the plan goes on (a
    # suite); otherwise the refusal stops everything with exit code 2 (a command).
    keep_going: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"runs": [run.to_dict() for run in self.runs], "skip_absent_device": self.skip_absent_device,
                "results_dir": None if self.results_dir is None else str(self.results_dir),
                "keep_going": self.keep_going}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        results_dir = data.get("results_dir")
        return cls(tuple(PlannedRun.from_dict(run) for run in data["runs"]),
                   None if results_dir is None else Path(results_dir), bool(data.get("skip_absent_device", True)),
                   bool(data.get("keep_going", False)))  # fmt: skip


@dataclass
class Outcome:
    """What one planned run gave: its results, the reference's first (a run Ctrl-C stopped before it began
    is missing), and for each the file a backend already wrote it to (a data-parallel run's rank 0 writes
    its own), or None: :func:`execute` stores it then."""

    planned: PlannedRun | None  # None: no run, only the news that the plan was stopped
    results: list[RunResult]
    written: list[Path | None] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        """Ctrl-C (or SIGTERM) stopped it: no further run of the plan starts."""
        if self.planned is None:
            return True
        started = 1 + (self.planned.reference is not None)
        return len(self.results) < started or any(r.record.status == "interrupted" for r in self.results)


class Backend(Protocol):
    def outcomes(self, plan: Plan) -> Iterator[Outcome]:
        """Run the plan's runs, yielding each one's outcome as it ends."""


@dataclass
class Execution:
    """Every record a plan made, in the order they ended, each with the file it was written to."""

    records: list[RunRecord] = field(default_factory=list)
    paths: list[Path | None] = field(default_factory=list)
    interrupted: bool = False
    problems: list[str] = field(default_factory=list)  # plugins that failed in run_end, one line each

    @property
    def failed(self) -> bool:
        """A run failed or diverged, or a plugin failed while told of a finished run: the command exits 1."""
        return bool(self.problems) or any(r.status in ("failed", "diverged") for r in self.records)


#: Called with a run's result before it is stored (to complete it), and after, with the file it went to.
Complete = Callable[[RunResult], None]
Written = Callable[[RunResult, Path | None], None]


def execute(plan: Plan, backend: Backend, session: Session, *, complete: Complete | None = None,
            written: Written | None = None) -> Execution:  # fmt: skip
    """Run ``plan`` with ``backend``: each record completed, shown to ``run_end`` observers and written once."""
    done = Execution()
    for outcome in backend.outcomes(plan):
        paths = outcome.written or [None] * len(outcome.results)
        for result, path in zip(outcome.results, paths, strict=True):
            if path is None:  # finished here (a backend that wrote it already says where)
                if complete is not None:
                    complete(result)
                stored = session.finish(result, plan.results_dir)
                path, done.interrupted = stored.path, done.interrupted or stored.interrupted
                done.problems += [stored.problem] if stored.problem else []
            done.records.append(result.record)
            done.paths.append(path)
            if written is not None:
                written(result, path)
        if outcome.interrupted or done.interrupted:
            done.interrupted = True
            break
    return done


def link_reference(record: RunRecord, ref: RunRecord, interleave: str = "run") -> None:
    """Store the reference's times and this run's ratios to them (noise-aware gating)."""
    record.reference = ReferenceInfo(recipe=ref.recipe, run_id=ref.run_id, train_s=ref.timings.train_s,
                                     total_s=ref.timings.total_s, interleave=interleave)  # fmt: skip
    record.timings_ratio = TimeRatios(
        train_s=record.timings.train_s / ref.timings.train_s if ref.timings.train_s else None,
        total_s=record.timings.total_s / ref.timings.total_s if ref.timings.total_s else None,
    )
