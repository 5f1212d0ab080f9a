"""What a run measures beside the phase clock: CUDA events and energy counters.

Both follow the clock's edges (``PhaseTimer.observers``). CUDA events time
each phase on the GPU's own timeline, between the same two synchronized
edges as the wall clock: the two agree on an honest GPU run, and a gap
between them says that the host, not the GPU, set the pace. Both figures go
into the record (``timings`` and ``cuda.event_s``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch

from ..results.schema import CudaInfo, EnergyInfo
from . import energy
from .timing import PhaseTimer


class CudaEventClock:
    """Seconds per phase from CUDA events recorded on the device's current stream at each edge."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self._open: dict[str, Any] = {}

    def _event(self):
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def start(self, phase: str) -> None:
        self._open[phase] = self._event()

    def stop(self, phase: str) -> None:
        start, end = self._open.pop(phase), self._event()
        end.synchronize()
        self.seconds[phase] += start.elapsed_time(end) / 1000  # elapsed_time is in milliseconds


@dataclass
class RunMeters:
    """The observers attached to one run's phase clock."""

    events: CudaEventClock | None
    energy: energy.EnergyMeter | None
    energy_reason: str | None = None


def attach(timer: PhaseTimer, device: torch.device) -> RunMeters:
    """CUDA events on a CUDA device, and an energy meter where the hardware has one, on ``timer``."""
    events = CudaEventClock(device) if device.type == "cuda" else None
    index = device.index if device.index is not None else (torch.cuda.current_device() if events else None)
    meter = energy.meter_for(device.type, index)
    meters = RunMeters(events, None, meter) if isinstance(meter, str) else RunMeters(events, meter)
    timer.observers.extend(m for m in (meters.events, meters.energy) if m is not None)
    return meters


def cuda_record(meters: RunMeters | None, settings: dict[str, Any] | None) -> CudaInfo | None:
    """What a CUDA run's step did to be fast (``settings``), and its phases by CUDA events; None elsewhere."""
    if meters is None or meters.events is None:
        return None
    return CudaInfo(**(settings or {}), event_s=dict(meters.events.seconds))


def energy_record(meters: RunMeters | None, images_trained: int) -> EnergyInfo | None:
    """The run's energy (see :meth:`energy.EnergyMeter.record`), or why there is none; None if it never started."""
    if meters is None:
        return None
    if meters.energy is None:
        return energy.unavailable(meters.energy_reason or "no energy counter")
    return meters.energy.record(images_trained)
