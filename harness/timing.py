"""A phase timer that waits for the device at every edge.

GPU work is queued, not done, when Python moves on: without a
synchronize at each edge, the end of training would be billed to
evaluation. Each phase is timed on its own; a phase entered twice (one
entry per epoch, say) adds up.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class PhaseTimer:
    def __init__(self, synchronize: Callable[[], None]) -> None:
        self._sync = synchronize
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] += time.perf_counter() - start
