"""A phase timer that waits for the device at every edge.

GPU work is queued, not done, when Python moves on: without a
synchronize at each edge, the end of training would be billed to
evaluation. Each phase is timed on its own; a phase entered twice (one
entry per epoch, say) adds up. A phase can be paused (a run taking turns
step by step with another one, see ``lockstep.py``): the time paused is
not billed to it.

Other clocks and counters can follow the same edges (CUDA events, energy
counters: see ``meters.py``): each observer's ``start(phase)`` and
``stop(phase)`` are called right after the synchronize at each edge, and
around a pause, so they measure exactly what the phase clock measures.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol


class PhaseObserver(Protocol):
    """Something that measures phases alongside the clock (device events, energy counters)."""

    def start(self, phase: str) -> None: ...

    def stop(self, phase: str) -> None: ...


class PhaseTimer:
    def __init__(self, synchronize: Callable[[], None]) -> None:
        self._sync = synchronize
        self.seconds: dict[str, float] = defaultdict(float)
        self._open: list[str] = []  # the phases being timed, innermost last
        self.away_s = 0.0  # time spent paused, in or out of a phase
        self.observers: list[PhaseObserver] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._sync()
        self._open.append(name)
        for observer in self.observers:
            observer.start(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] += time.perf_counter() - start
            for observer in self.observers:
                observer.stop(name)
            self._open.pop()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the time spent inside out of every open phase (the device is synced at both edges)."""
        self._sync()
        start = time.perf_counter()
        for observer in self.observers:  # inside the time away: what observers cost is billed to no phase
            for name in self._open:
                observer.stop(name)
        try:
            yield
        finally:
            self._sync()
            for observer in self.observers:
                for name in self._open:
                    observer.start(name)
            away = time.perf_counter() - start
            self.away_s += away
            for name in self._open:
                self.seconds[name] -= away
