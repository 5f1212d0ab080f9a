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
state and random streams back. The settings chosen, and what each candidate
measured, go into the record.

The thread count and the kernels change how floating-point sums are ordered,
so they decide the last bits of every loss. A choice made afresh from a
fraction of a second of timing in every run would make the same command give
different numbers on the same machine. So the choice is made once per
machine and step (:func:`decide`): the first run measures, the decision is
kept in the cache folder, keyed by the CPU model, the torch version and the
step's signature (model, batch shape, variant), and every later run reuses
it until ``--retune`` asks for a new measurement.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..files import UnreadableFile, read_json, write_json_atomic
from ..results.schema import CpuInfo
from ..results.store import utc_now
from . import environment

#: Seconds of training steps per candidate and round, read from $CIFAR_BENCH_TUNE_S. Measured once per
#: machine and step, so it can afford to be long: a quarter of a second of idle steps did not predict
#: 25,000 steps beside a progress display (a 2-thread pick measured at 0.95 ms/step trained at 1.6).
BUDGET_ENV = "CIFAR_BENCH_TUNE_S"
DEFAULT_BUDGET_S = 1.5
MAX_STEPS = 5000  # per candidate and round, for very fast steps
ROUNDS = 3  # rounds over all candidates, in alternating order: a drift of the machine hits them all alike
SLOWER_THAN_MEASURED = 1.25  # trained / measured ms per step above which the record and the console say so
#: Share of the machine's CPU time that other work took while tuning measured, above which the decision is called
#: busy and said to be so whenever it is used. On the 2-core machine a decision made beside other work chose 1 thread
#: (3.3 ms/step) and was kept; measured quiet, 2 threads stepped at 1.38 ms against 1 thread's 1.61.
BUSY_SHARE = 0.25
MIN_READING_CPU_S = 2.0  # CPU seconds (over all cores) a tuning must span for its share of others' work to count


def budget_s() -> float:
    try:
        return max(0.01, float(os.environ.get(BUDGET_ENV, DEFAULT_BUDGET_S)))
    except ValueError:
        return DEFAULT_BUDGET_S


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
    """Time ``step`` under each option; return the fastest and each option's median ms per step.

    ``step`` should be a training step as training runs it: the next batch
    from the run's own loader, and now and then the wait for the loss that a
    progress report makes (see runner.TrainStep.warm_up).
    """
    budget = budget_s()
    times: dict[CpuSettings, list[float]] = {option: [] for option in options}
    for r in range(ROUNDS):
        for option in options if r % 2 == 0 else options[::-1]:
            with option.applied():
                step()  # the first step after a switch pays for it
                steps, start = 0, time.perf_counter()
                while steps < 2 or (steps < MAX_STEPS and time.perf_counter() - start < budget):
                    step()
                    steps += 1
                times[option].append((time.perf_counter() - start) / steps)
    medians = {option: statistics.median(t) for option, t in times.items()}
    best = min(medians, key=medians.get)
    return best, {option.label: round(1e3 * ms, 4) for option, ms in medians.items()}


#: The file in the cache folder that keeps every decision made on this machine.
DECISIONS_FILE = "cpu-tuning.json"


@dataclass(frozen=True)
class Decision:
    """The CPU settings a step trains with, and where that choice came from."""

    settings: CpuSettings
    timings: dict[str, float]  # candidate label -> median ms per step, as measured when decided
    measured_at: str  # when the timings were taken (UTC)
    how: str  # "measured" (in this run) or "kept" (an earlier run's measurement on this machine)
    key: str  # names the machine and step the decision belongs to
    others_share: float | None = None  # share of the machine's CPU time other work took while it was measured

    @property
    def busy(self) -> bool:
        """Whether other work shared the machine while the timings were taken (so they may favour the wrong one)."""
        return self.others_share is not None and self.others_share > BUSY_SHARE

    def describe(self) -> str:
        when = "measured now" if self.how == "measured" else f"kept from {self.measured_at}"
        if self.busy:
            when += f" while other work took {self.others_share:.0%} of the CPU: --retune on a quiet machine"
        elif self.how == "kept":
            when += "; --retune measures again"
        return f"{self.settings.label} ({when})"

    def to_record(self) -> CpuInfo:
        return CpuInfo(
            threads=self.settings.threads,
            onednn=self.settings.onednn,
            tuned_ms_per_step=self.timings,
            decision=self.how,
            measured_at=self.measured_at,
            others_cpu_share=self.others_share,
            busy=self.busy,
            key=self.key,
        )

    def check(self, trained_ms_per_step: float, steps: int) -> dict[str, Any]:
        """How training's own step time (over its first ``steps``) compares with what tuning measured.

        The settings are not switched in mid-run: the thread count and the
        kernels decide how sums round, and a run's numbers must not depend on
        a timing. A clearly slower run is recorded and said; ``--retune``
        measures again (and later runs keep the new choice).
        """
        measured = self.timings.get(self.settings.label)
        ratio = trained_ms_per_step / measured if measured else None
        return {
            "after_steps": steps,
            "trained_ms_per_step": round(trained_ms_per_step, 4),
            "ratio_to_tuned": None if ratio is None else round(ratio, 3),
            "slower_than_tuned": ratio is not None and ratio > SLOWER_THAN_MEASURED,
        }


@dataclass(frozen=True)
class TuningRequest:
    """What a run asks of tuning: its step's signature, where decisions are kept, and whether to measure again."""

    signature: Mapping[str, Any]  # what makes one step different from another: model, batch shape, variant
    folder: Path  # the cache folder holding DECISIONS_FILE
    retune: bool = False
    threads: int | None = None  # the user fixed the thread count: only the kernels are chosen

    def decide(self, step: Callable[[], object]) -> Decision:
        options = candidates(self.threads)
        key = decision_key(environment.cpu_model(), self.signature, options)
        return decide(step, options, key, self.folder, retune=self.retune)


def decision_key(cpu: str, signature: Mapping[str, Any], options: list[CpuSettings]) -> str:
    """Names one machine (CPU model, torch version) and one step signature (and the candidates offered)."""
    what = {"cpu": cpu, "torch": torch.__version__, "step": dict(signature), "options": [o.label for o in options]}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def decide(
    step: Callable[[], object],
    options: list[CpuSettings],
    key: str,
    folder: Path,
    *,
    retune: bool = False,
) -> Decision:
    """The settings for this step: the decision kept in ``folder`` for ``key``, else measured now and kept."""
    path = folder / DECISIONS_FILE
    decisions = _read_decisions(path)
    kept = decisions.get(key)
    by_label = {option.label: option for option in options}
    if not retune and isinstance(kept, Mapping) and kept.get("label") in by_label:
        timings, share = kept.get("tuned_ms_per_step"), kept.get("others_cpu_share")
        return Decision(
            by_label[kept["label"]],
            dict(timings) if isinstance(timings, Mapping) else {},
            str(kept.get("measured_at", "")),
            "kept",
            key,
            float(share) if isinstance(share, (int, float)) and not isinstance(share, bool) else None,
        )
    before = machine_cpu_s()
    best, timings = tune(step, options)
    share = others_share(before, machine_cpu_s())
    decision = Decision(best, timings, utc_now(), "measured", key, share)
    decisions = _read_decisions(path)  # again: another process may have decided other steps meanwhile
    decisions[key] = {"label": best.label, "tuned_ms_per_step": timings, "measured_at": decision.measured_at,
                      "others_cpu_share": share}  # fmt: skip
    # An unwritable cache folder: the run goes on with what it measured, and later runs measure again.
    with contextlib.suppress(OSError):
        write_json_atomic(path, decisions)
    return decision


@dataclass(frozen=True)
class CpuReading:
    """CPU seconds counted since boot, read at one moment (:func:`machine_cpu_s`)."""

    busy_s: float  # the whole machine's, all cores, steal included
    total_s: float  # the whole machine's, all cores, idle included
    own_s: float  # this process's


def machine_cpu_s() -> CpuReading | None:
    """The machine's and this process's CPU seconds now, or None off Linux.

    Busy includes ``steal``: on a virtual machine, time the host gave to other guests is time this run lost.
    """
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    idle = fields[3] + fields[4]
    return CpuReading((sum(fields) - idle) / tick, sum(fields) / tick, time.process_time())


def others_share(before: CpuReading | None, after: CpuReading | None) -> float | None:
    """The share of the machine's CPU time between two :func:`machine_cpu_s` readings that other work took."""
    if before is None or after is None or after.total_s - before.total_s < MIN_READING_CPU_S:
        return None  # too short a window for the clock ticks /proc/stat counts in (10 ms) to say much
    others = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    return round(min(1.0, max(0.0, others / (after.total_s - before.total_s))), 3)


def _read_decisions(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except FileNotFoundError:
        return {}
    except (OSError, UnreadableFile):
        return {}  # unreadable: measured again, and rewritten whole
    return data if isinstance(data, dict) else {}
