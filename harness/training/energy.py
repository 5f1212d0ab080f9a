"""Energy and utilization, where the hardware tells: NVML on NVIDIA GPUs, RAPL on CPUs.

A meter follows the phase clock's edges (see ``timing.py``): at each phase's
start and stop it reads a cumulative energy counter, so each phase gets the
joules spent between its edges. While a phase is open a background thread
polls every :data:`POLL_S` seconds: on a GPU for the utilization (NVML
reports the share of the last sample period a kernel was running), on a
CPU to follow the RAPL counter across its wrap-around (a 32-bit microjoule
counter wraps after about 4,300 J, some tens of seconds at full power).

Where neither is readable the run records ``"source": null`` and the
reason, never a guess. RAPL counts a whole CPU package: other processes
on the machine are in its joules too.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..results.schema import EnergyInfo

RAPL_ROOT = Path("/sys/class/powercap")
POLL_S = 0.1  # seconds between utilization samples / counter reads while a phase is open
NVML_EXTRA = "pip install 'cifar-bench[energy]' (nvidia-ml-py) to measure GPU energy and utilization"


class Unavailable(Exception):
    """No energy counter here; the message says why."""


class EnergyMeter:
    """Joules (and mean utilization, where known) per phase, from a cumulative counter.

    ``read_joules()`` returns the energy used since the meter began, never
    decreasing; ``poll()`` is called every :data:`POLL_S` seconds while a
    phase is open and may return a utilization sample in percent (or None).
    """

    def __init__(self, source: str, scope: str, read_joules: Callable[[], float],
                 poll: Callable[[], float | None] | None = None, poll_s: float = POLL_S) -> None:  # fmt: skip
        self.source, self.scope = source, scope
        self._read, self._poll, self._poll_s = read_joules, poll, poll_s
        self.joules: dict[str, float] = defaultdict(float)
        self._samples: dict[str, list[float]] = defaultdict(list)
        self._began: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self, phase: str) -> None:
        self._began[phase] = self._read()
        if self._poll is not None and self._thread is None:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, args=(phase, self._stop), daemon=True)
            self._thread.start()

    def stop(self, phase: str) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = self._stop = None
            self._take_sample(phase)  # at least one sample, however short the phase
        self.joules[phase] += self._read() - self._began.pop(phase)

    def _sample(self, phase: str, stop: threading.Event) -> None:
        while not stop.wait(self._poll_s):
            self._take_sample(phase)

    def _take_sample(self, phase: str) -> None:
        with self._lock:
            value = self._poll()
            if value is not None:
                self._samples[phase].append(float(value))

    def record(self, images_trained: int) -> EnergyInfo:
        run_j = sum(self.joules.values())
        train_j = self.joules.get("train", 0.0)
        return EnergyInfo(
            source=self.source,
            scope=self.scope,
            reason=None,
            phase_j=dict(self.joules),
            run_j=run_j,
            train_img_per_j=images_trained / train_j if train_j > 0 else None,
            mean_utilization_pct={p: sum(s) / len(s) for p, s in self._samples.items() if s} or None,
        )


def unavailable(reason: str) -> EnergyInfo:
    """The record of a run whose energy could not be measured."""
    return EnergyInfo(source=None, reason=reason)


# -- NVML (NVIDIA GPUs) -------------------------------------------------------------


def nvml_meter(device_index: int, nvml: Any = None) -> EnergyMeter:
    """A meter on GPU ``device_index`` (NVML's numbering) through ``pynvml`` (the ``nvidia-ml-py`` package)."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            raise Unavailable(f"NVML is not installed: {NVML_EXTRA}") from None
    try:
        nvml.nvmlInit()
        handle = nvml.nvmlDeviceGetHandleByIndex(device_index)
        name = nvml.nvmlDeviceGetName(handle)
        first_mj = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # millijoules since the driver loaded
    except nvml.NVMLError as exc:
        raise Unavailable(f"NVML cannot read GPU {device_index}'s energy counter: {exc}") from None
    name = name.decode() if isinstance(name, bytes) else str(name)

    def read_joules() -> float:
        return (nvml.nvmlDeviceGetTotalEnergyConsumption(handle) - first_mj) / 1000

    def utilization() -> float:
        return nvml.nvmlDeviceGetUtilizationRates(handle).gpu

    return EnergyMeter("nvml", f"GPU {device_index} ({name})", read_joules, utilization)


# -- RAPL (CPU packages, Linux powercap) --------------------------------------------------


class RaplCounter:
    """The summed energy of every CPU package's RAPL zone, in joules since creation, across wrap-arounds."""

    def __init__(self, root: Path) -> None:
        zones = [z for z in sorted(Path(root).glob("intel-rapl:*")) if re.fullmatch(r"intel-rapl:\d+", z.name)]
        # Top-level zones are the packages (and, on some machines, "psys", the whole platform:
        # counting it too would count the packages twice).
        zones = [z for z in zones if _read_text(z / "name", "package").startswith("package")]
        if not zones:
            raise Unavailable(f"no RAPL package counters in {root} (not exposed on this machine, or a VM hides them)")
        self.zones, self.ranges, self.last, self.total_uj = zones, [], [], 0
        for zone in zones:
            try:
                self.last.append(int((zone / "energy_uj").read_text()))
            except PermissionError:
                raise Unavailable(
                    f"{zone / 'energy_uj'} is readable by root only: run as root, or make it readable"
                ) from None
            except (OSError, ValueError) as exc:
                raise Unavailable(f"cannot read {zone / 'energy_uj'}: {exc}") from None
            self.ranges.append(int(_read_text(zone / "max_energy_range_uj", "0") or 0))
        self._lock = threading.Lock()

    def joules(self) -> float:
        with self._lock:  # the sampler thread and the phase edges both read
            for i, zone in enumerate(self.zones):
                now = int((zone / "energy_uj").read_text())
                delta = now - self.last[i]
                if delta < 0:  # the counter wrapped
                    delta += self.ranges[i] if self.ranges[i] else 0
                self.total_uj += max(delta, 0)
                self.last[i] = now
            return self.total_uj / 1e6


def rapl_meter(root: Path | None = None) -> EnergyMeter:
    counter = RaplCounter(RAPL_ROOT if root is None else root)

    def poll() -> None:  # reading often enough is what catches every wrap-around
        counter.joules()

    names = ", ".join(z.name for z in counter.zones)
    return EnergyMeter("rapl", f"CPU packages ({names}), whole machine", counter.joules, poll, poll_s=1.0)


def _read_text(path: Path, default: str) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


# -- which meter for a device --------------------------------------------------------------


def meter_for(device_type: str, device_index: int | None = None) -> EnergyMeter | str:
    """The meter for a run's device, or the reason there is none."""
    try:
        if device_type == "cuda":
            return nvml_meter(_nvml_index(device_index or 0))
        if device_type == "cpu":
            return rapl_meter()
    except Unavailable as exc:
        return str(exc)
    return f"no energy counter is read for {device_type} devices"


def _nvml_index(cuda_index: int) -> int:
    # CUDA_VISIBLE_DEVICES renumbers GPUs for CUDA but not for NVML; torch knows the mapping.
    import torch

    to_nvml = getattr(torch.cuda, "_get_nvml_device_index", None)
    try:
        return to_nvml(cuda_index) if to_nvml else cuda_index
    except Exception:
        return cuda_index
