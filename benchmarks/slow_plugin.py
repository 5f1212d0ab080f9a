"""A planted slowdown for testing the regression gate: the baseline Net, 15% slower to train.

Load it with ``-p benchmarks/slow_plugin.py`` and pick its model with
``--model net_slow``; ``--set slowdown=0.3`` plants a different size.

The slowdown is relative, not a fixed sleep: before each training forward
pass, the model busy-waits for ``slowdown`` times the work done since the
previous one (the whole previous step: forward, backward, optimizer). On a
shared machine, where a step's time drifts with the neighbours' load, a
fixed sleep would be 15% at one moment and 8% the next; this stays 15% of
whatever a step costs now. It waits by spinning on the clock rather than
with ``time.sleep``, whose wake-up overshoot (tens of microseconds) would be
a large share of a two-millisecond step. Evaluation is not slowed.
"""

from __future__ import annotations

import time

import torch

from cifar_bench import hookimpl
from cifar_bench.plugins.baseline import Net


class SlowNet(Net):
    """The tutorial's Net; each training step costs ``1 + slowdown`` times as long."""

    def __init__(self, num_classes: int = 10, slowdown: float = 0.15) -> None:
        super().__init__(num_classes)
        self.slowdown = slowdown
        self._last_start: float | None = None
        self._last_wait = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            now = time.perf_counter()
            wait = 0.0
            if self._last_start is not None:
                wait = self.slowdown * max(0.0, now - self._last_start - self._last_wait)
                deadline = now + wait
                while time.perf_counter() < deadline:
                    pass
            self._last_start, self._last_wait = now, wait
        return super().forward(x)

    def train(self, mode: bool = True) -> SlowNet:
        self._last_start = None  # the harness calls train() before each epoch: nothing before it to scale
        return super().train(mode)


@hookimpl
def register_models(register):
    register(
        "net_slow",
        lambda hp: SlowNet(hp.get("num_classes", 10), float(hp.get("slowdown", 0.15))),
        "the baseline Net with a planted slowdown of each training step (default 15%)",
    )
