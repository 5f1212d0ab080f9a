"""Devices: which exist, why one is skipped, and how to wait for one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:  # torch is imported where a device is looked at, so that parsing a device list stays cheap
    import torch

KNOWN = ("cpu", "cuda", "mps")


def parse_devices(spec: str) -> list[str]:
    """``"cpu"``, ``"cuda:1"``, ``"cpu,cuda"`` or ``"all"`` -> a list of device strings.

    ``all`` means every device kind this machine has. Names are checked for
    form here; whether the device exists is :func:`unavailable_reason`'s job.
    """
    if spec.strip() == "all":
        return [d for d in ("cpu", "cuda", "mps") if unavailable_reason(d) is None]
    devices = []
    for part in (p.strip() for p in spec.split(",")):
        kind, _, index = part.partition(":")
        if kind not in KNOWN or (index and not index.isdigit()):
            raise UsageError(f"unknown device {part!r}: use cpu, cuda, cuda:N, mps, a list such as cpu,cuda, or all")
        if part not in devices:
            devices.append(part)
    return devices


def unavailable_reason(device: str) -> str | None:
    """Why ``device`` cannot run here, or ``None`` when it can."""
    import torch

    kind, _, index = device.partition(":")
    if kind == "cpu":
        return None
    if kind == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available (no NVIDIA GPU, or torch built without CUDA)"
        if index and int(index) >= torch.cuda.device_count():
            return f"cuda:{index} does not exist ({torch.cuda.device_count()} CUDA device(s))"
        return None
    if kind == "mps":
        if not torch.backends.mps.is_available():
            return "MPS is not available (needs Apple silicon and a torch built with MPS)"
        return None
    return f"unknown device {device!r}"


def synchronize(device: torch.device) -> None:
    """Wait until all work queued on ``device`` is done, so that a timer reads true time."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def device_name(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    from .environment import cpu_model

    return cpu_model()
