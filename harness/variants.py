"""Variants: the ways to run the same recipe faster (precision, memory format, compile, CUDA graphs).

A variant changes how the numbers are computed, never what is computed.
Each one is recorded and is part of a run's workload (see workload.py), and
a combination the device cannot do is skipped with a reason.

torch is imported only where a variant is applied, so that the command line
can offer the choices without loading it.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: Autocast precisions, by name; see :func:`dtype`.
PRECISIONS = ("fp32", "bf16", "fp16")

#: Where training batches come from (see batches.py): decoded once and kept on the device, or the tutorial's.
LOADERS = ("tensor", "dataloader")


def dtype(precision: str) -> torch.dtype:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def label(variant: Mapping[str, Any]) -> str:
    """``tensor fp32``, ``tensor bf16 channels_last compile``, ``tensor fp32 2 processes`` ...

    The one name of a variant, as tables show it: the loader, the precision,
    the flags that are on, and a data-parallel run's process count (so that
    one is never pooled or paired with a single process).
    """
    flags = [name for name in ("channels_last", "compile", "cuda_graph", "deterministic") if variant.get(name)]
    world = variant.get("world_size", 1)
    processes = [f"{world} processes"] if isinstance(world, int) and world > 1 else []
    return " ".join([str(variant.get("loader", "tensor")), str(variant.get("precision", "fp32")), *flags, *processes])


@dataclass(frozen=True)
class Variant:
    precision: str = "fp32"  # autocast dtype for forward and loss; weights stay fp32
    channels_last: bool = False  # NHWC memory format for model and data
    compile: bool = False  # torch.compile the model (compiled in the warm-up phase)
    cuda_graph: bool = False  # replay the step's forward and backward as CUDA graphs (see cuda_graphs.py)

    def autocast(self, device: torch.device) -> AbstractContextManager:
        import torch

        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype(self.precision))


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
        import torch

        if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            return "torch.compile on the CPU needs a C++ compiler (g++ or clang++) on PATH"
        if not hasattr(torch, "compile"):
            return "this torch has no torch.compile"
    return None


def _autocast_problem(device: torch.device, dtype: torch.dtype) -> str | None:
    # torch turns autocast off with a warning (not an error) for dtypes a
    # device lacks; catch that and check the result really is in `dtype`.
    import torch

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
    import torch

    if device.type == "cuda":
        return torch.cuda.is_available()
    if device.type == "mps":
        return torch.backends.mps.is_available()
    return True
