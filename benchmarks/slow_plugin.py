"""A planted slowdown for testing the regression gate: the baseline Net, made slower to train.

Load it with ``-p benchmarks/slow_plugin.py`` and pick its model with
``--model net_slow``. The size of the plant comes from the environment,
``CIFAR_BENCH_PLANTED_SLOWDOWN`` (default 0.15; 0 plants nothing), so that a
slowed run and an unslowed one are the same work to ``compare``, as a slower
commit of the same code would be: the record names the model ``net_slow``
either way and no hyperparameter differs. ``--set slowdown=0.3`` also sets it,
and then the record says so (and ``compare`` calls the two different work).

The slowdown is extra compute, not a sleep: before each training forward
pass, the model spins for ``slowdown`` times the CPU time its thread spent
since the previous one (the whole previous step: forward, backward,
optimizer). Measured in CPU time, the spin behaves like real work on a
shared machine: when neighbours take half the CPU, the step and the spin
both take twice as long, so the run stays 15% slower. A fixed
``time.sleep`` would be 15% when the machine is quiet and 8% when it is
busy; a spin measured in wall time would grow whenever the spin itself is
preempted. It assumes torch computes on the calling thread (one intra-op
thread, as ``benchmarks/gate_false_alarms.py`` sets). Evaluation is not
slowed.

The spin also slows the real work after it a little: on a 2-core EPYC VM, a
spin of 15% of the step's CPU time made training 18-19% slower, measured
step by step against a reference run, and a spin of 12.5% made it 15%
slower; on the 2-core Xeon VM, 12.5% made it 13% slower
(``gate_false_alarms.py`` prints what it measured).
"""

from __future__ import annotations

import os
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
        self._last_spin = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            now = time.thread_time()
            spin = 0.0
            if self._last_start is not None:
                spin = self.slowdown * max(0.0, now - self._last_start - self._last_spin)
                while time.thread_time() < now + spin:
                    pass
            self._last_start, self._last_spin = now, spin
        return super().forward(x)

    def train(self, mode: bool = True) -> SlowNet:
        self._last_start = None  # the harness calls train() before each epoch: nothing before it to scale
        return super().train(mode)


#: The environment variable that sizes the plant when no ``slowdown`` hyperparameter is set.
PLANT_ENV = "CIFAR_BENCH_PLANTED_SLOWDOWN"


def slow_net(hp) -> SlowNet:
    slowdown = hp.get("slowdown")
    if slowdown is None:  # from the environment: not part of the record's work
        slowdown = os.environ.get(PLANT_ENV, "0.15")
    return SlowNet(hp.get("num_classes", 10), float(slowdown))


@hookimpl
def register_models(register):
    register(
        "net_slow",
        slow_net,
        "the baseline Net with a planted slowdown of each training step (default 15%)",
    )
