"""The in-process backend: each planned run in turn, in this process, with its reference if it has one.

Data decoded once is reused by the later runs of the session. A reference run is interleaved with its
candidate step by step on threads of this process (``lockstep.py``), or run before it (``interleave
run``); the candidate, when both ended ok, carries its time ratios to the reference.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch

from ..errors import PluginError, UsageError
from ..training.config import RunConfig
from ..training.session import Session
from ..training.state import RunResult
from ..training.world import SINGLE, World
from . import lockstep
from .plan import Outcome, Plan, PlannedRun, link_reference

#: Called as each planned run starts (a suite's progress line).
Announce = Callable[[PlannedRun], None]


class InProcess:
    """Runs a plan here, with ``session``; ``world`` is this process's place among a data-parallel run's ranks.

    ``turn``, if given, is called after each training step of every run (an ``ab`` side hands the baton to
    the other install there).
    """

    def __init__(self, session: Session, world: World = SINGLE, *, turn: Callable[[], None] | None = None,
                 announce: Announce | None = None) -> None:  # fmt: skip
        self.session, self.world, self.turn, self.announce = session, world, turn, announce

    def outcomes(self, plan: Plan) -> Iterator[Outcome]:
        absent: set[str] = set()
        for planned in plan.runs:
            if planned.config.device in absent:
                continue  # the device is absent: its other repeats would say the same
            if self.announce is not None:
                self.announce(planned)
            outcome = Outcome(planned, self.run_one(planned, keep_going=plan.keep_going))
            yield outcome
            skipped = outcome.results and outcome.results[-1].record.status == "skipped"
            if plan.skip_absent_device and skipped:
                absent.add(planned.config.device)

    def run_one(self, planned: PlannedRun, *, keep_going: bool = False) -> list[RunResult]:
        """One planned run (and its reference): their results, the reference's first."""
        start = time.perf_counter()
        try:
            with threads(planned.config.threads):
                if planned.reference is None:
                    return [self.session.run(planned.config, turn=self.turn, world=self.world)]
                return self._with_reference(planned)
        except (UsageError, PluginError) as exc:
            if not keep_going:
                raise
            # Its data missing, say: this run fails, the plan goes on.
            error = str(exc)
            return [self.session.unstarted(planned.config, "failed", error, time.perf_counter() - start)]

    def _with_reference(self, planned: PlannedRun) -> list[RunResult]:
        """The reference run and the candidate run, one after the other or taking turns step by step.

        The candidate, when both ended ok, carries its time ratios to the reference. A run Ctrl-C stopped
        before it started is left out.
        """
        candidate, reference = planned.config, planned.reference
        if planned.interleave == "run":
            ref = self.session.run(reference, world=self.world)
            record = self.session.run(candidate, world=self.world) if ref.record.status != "interrupted" else None
        else:  # CPU settings are the process's: runs taking turns share one set, untuned
            both = (replace(reference, cpu_tune=False), replace(candidate, cpu_tune=False))
            core = lockstep.shared_core(candidate.variant.loader)
            ref, record = lockstep.run_lockstep(lambda i, turn: self.session.run(both[i], turn=turn), 2, core)
        if ref is not None and record is not None and ref.record.status == record.record.status == "ok":
            link_reference(record.record, ref.record, planned.interleave)
        return [r for r in (ref, record) if r is not None]


@contextmanager
def threads(count: int | None):
    """torch's CPU threads fixed to ``count`` for a run (the process's own when None), then put back."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def reference_config(candidate: RunConfig, recipe: str, epochs: int | None) -> RunConfig:
    """The ``--reference`` run: the candidate's data, device, variant, seed and length, not its recipe changes."""
    length = {"epochs": epochs} if epochs is not None else {}
    return replace(candidate, recipe=recipe, components={}, hyperparameters=length, role="reference", suite_key=None,
                   evaluations=())  # a yardstick for time: it measures nothing after training  # fmt: skip
