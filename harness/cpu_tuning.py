"""CPU tuning: time the candidate CPU settings on the run's own step and train with the fastest.

The CPU counterpart of ``torch.backends.cudnn.benchmark``. Which settings are
fastest depends on the work: measured on a 2-core machine, the tutorial's
batch of 4 through its tiny Net steps about 14% faster with PyTorch's own
convolution kernels than with oneDNN's, and on one intra-op thread its step
time stays put when a neighbour process is busy, where two threads can
stall each other ten times over. A batch of 512 through a wide network
wants every core and oneDNN. So the harness measures instead of guessing.

Tuning runs inside the warm-up phase (never in train time), on the run's
model, optimizer and batch shape; the warm-up then puts weights, optimizer
state and random streams back, so tuning changes speed, never results. The
settings chosen, and what each candidate measured, go into the record.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

BUDGET_S = 0.25  # seconds of steps per candidate and round: enough for a stable median
MAX_STEPS = 50  # per candidate and round, for fast steps
ROUNDS = 2  # rounds over all candidates, in alternating order


@dataclass(frozen=True)
class CpuSettings:
    threads: int  # torch intra-op threads
    onednn: bool  # oneDNN (mkldnn) kernels for convolutions and friends

    @property
    def label(self) -> str:
        return f"{self.threads} thread{'s' if self.threads > 1 else ''}, {'oneDNN' if self.onednn else 'native'}"

    @contextmanager
    def applied(self) -> Iterator[None]:
        threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
        torch.set_num_threads(self.threads)
        torch.backends.mkldnn.enabled = self.onednn
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.backends.mkldnn.enabled = onednn


def current() -> CpuSettings:
    return CpuSettings(torch.get_num_threads(), bool(torch.backends.mkldnn.enabled))


def candidates(threads: int | None = None) -> list[CpuSettings]:
    """One thread and the process's thread count (or just ``threads``), each with and without oneDNN."""
    counts = [threads] if threads else sorted({1, torch.get_num_threads()})
    kernels = (True, False) if torch.backends.mkldnn.is_available() else (False,)
    return [CpuSettings(t, k) for t in counts for k in kernels]


def tune(step: Callable[[], object], options: list[CpuSettings]) -> tuple[CpuSettings, dict[str, float]]:
    """Time ``step`` under each option; return the fastest and each option's median ms per step."""
    times: dict[CpuSettings, list[float]] = {option: [] for option in options}
    for r in range(ROUNDS):
        for option in options if r % 2 == 0 else options[::-1]:
            with option.applied():
                step()  # the first step after a switch pays for it
                steps, start = 0, time.perf_counter()
                while steps < 2 or (steps < MAX_STEPS and time.perf_counter() - start < BUDGET_S):
                    step()
                    steps += 1
                times[option].append((time.perf_counter() - start) / steps)
    medians = {option: statistics.median(t) for option, t in times.items()}
    best = min(medians, key=medians.get)
    return best, {option.label: round(1e3 * ms, 4) for option, ms in medians.items()}
