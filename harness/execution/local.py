"""A suite's local backend: each run in turn on this machine; single-process runs in this process, data-parallel
ones as ranks under torchrun."""

from __future__ import annotations

from collections.abc import Iterator

from ..training.devices import unavailable_reason
from .inprocess import Announce, InProcess
from .plan import Outcome, Plan
from .torchrun import Torchrun


class Local:
    def __init__(self, here: InProcess, ranks: Torchrun, announce: Announce | None = None) -> None:
        self.here, self.ranks, self.announce = here, ranks, announce

    def outcomes(self, plan: Plan) -> Iterator[Outcome]:
        for planned in plan.runs:
            if self.announce is not None:
                self.announce(planned)
            config = planned.config
            # A data-parallel run whose device is missing runs here, to be recorded as skipped.
            if config.processes > 1 and unavailable_reason(config.device) is None:
                yield self.ranks.run_one(planned, plan.results_dir)
            else:
                yield Outcome(planned, self.here.run_one(planned, keep_going=plan.keep_going))
