"""What a variant does on a device: autocast, and whether the device can run it at all.

The variant itself (its fields, defaults and label) is ``cifar_bench.results.variant.Variant``. A variant
changes how the numbers are computed, never what is computed; a combination the device cannot do is
skipped with a reason.
"""

from __future__ import annotations

import shutil
import warnings
from contextlib import AbstractContextManager, nullcontext

import torch

from ..results.variant import PRECISIONS, Variant


def dtype(precision: str) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(variant: Variant, device: torch.device) -> AbstractContextManager:
    """The variant's autocast for forward and loss on ``device`` (nothing for fp32)."""
    if variant.precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype(variant.precision))


def unsupported_reason(variant: Variant, device: torch.device) -> str | None:
    """Why this device cannot run this variant, or ``None`` when it can."""
    if variant.precision not in PRECISIONS:
        return f"unknown precision {variant.precision!r}"
    if variant.precision != "fp32":
        problem = _autocast_problem(device, dtype(variant.precision))
        if problem:
            return f"{variant.precision} autocast on {device.type}: {problem}"
    if variant.cuda_graph:
        if device.type != "cuda":
            return f"CUDA graphs need a CUDA device, not {device.type}"
        if variant.compile:
            return "CUDA graphs and torch.compile do not combine here: choose --cuda-graph or --compile"
        if variant.precision == "fp16":
            return "CUDA graphs with fp16 would need loss scaling inside the graph: use bf16"
    if variant.compile:
        if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            return "torch.compile on the CPU needs a C++ compiler (g++ or clang++) on PATH"
        if not hasattr(torch, "compile"):
            return "this torch has no torch.compile"
    return None


def _autocast_problem(device: torch.device, dtype: torch.dtype) -> str | None:
    # torch turns autocast off with a warning (not an error) for dtypes a
    # device lacks; catch that and check the result really is in `dtype`.
    if device.type in ("cuda", "mps") and not _device_present(device):
        return None  # the device check reports this, more clearly
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.autocast(device_type=device.type, dtype=dtype):
                a = torch.ones(8, 8, device=device)
                out = a @ a
    except (RuntimeError, ValueError) as exc:
        return str(exc).splitlines()[0]
    if out.dtype != dtype:
        messages = [str(w.message).splitlines()[0] for w in caught]
        return messages[0] if messages else f"computes in {out.dtype}, not {dtype}"
    return None


def _device_present(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_available()
    if device.type == "mps":
        return torch.backends.mps.is_available()
    return True
