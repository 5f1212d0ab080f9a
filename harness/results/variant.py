"""The variant of a run: how it computes, never what (loader, precision, memory format, compile, CUDA graphs,
deterministic algorithms).

The one definition of a variant. Runs take it from here (``RunConfig.variant``), records store its fields,
workloads and tables name it with :meth:`Variant.label`, suites and ``ab`` accept every field of it, and CPU
tuning keys its decisions by it. What a variant *does* on a device (autocast, whether the device can run it)
needs torch and lives in ``cifar_bench.training.variants``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

#: Autocast precisions, by name (training.variants maps them to torch dtypes).
PRECISIONS = ("fp32", "bf16", "fp16")

#: Where training batches come from: decoded once and kept on the device, or the tutorial's DataLoader.
LOADERS = ("tensor", "dataloader")

#: The flags a label names when they are on, in this order.
FLAGS = ("channels_last", "compile", "cuda_graph", "deterministic")


@dataclass(frozen=True)
class Variant:
    loader: str = "tensor"  # see LOADERS
    precision: str = "fp32"  # autocast dtype for forward and loss; weights stay fp32
    channels_last: bool = False  # NHWC memory format for model and data
    compile: bool = False  # torch.compile the model (compiled in the warm-up phase)
    cuda_graph: bool = False  # replay the step's forward and backward as CUDA graphs
    deterministic: bool = False  # torch.use_deterministic_algorithms for the run

    def label(self, world_size: int = 1) -> str:
        """``tensor fp32``, ``tensor bf16 channels_last compile``, ``tensor fp32 2 processes`` ...

        The one name of a variant, as tables show it: the loader, the precision, the flags that are on, and a
        data-parallel run's process count (so that one is never pooled or paired with a single process).
        """
        on = [name for name in FLAGS if getattr(self, name)]
        processes = [f"{world_size} processes"] if world_size > 1 else []
        return " ".join([self.loader, self.precision, *on, *processes])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Variant:
        """The variant a record (or a suite's table) describes; a field missing or of the wrong type reads as
        its default, as records of older layouts lack the newer fields."""
        values = {}
        for f in fields(cls):
            value = data.get(f.name, f.default)
            values[f.name] = value if isinstance(value, type(f.default)) else f.default
        return cls(**values)


#: Every field with its default: what a record lacking one means.
DEFAULTS: dict[str, Any] = Variant().to_dict()


def problem(variant: Variant) -> str | None:
    """What makes a variant's values unknown ones (a typo in a suite file, say), or None."""
    if variant.loader not in LOADERS:
        return f"loader must be one of {', '.join(LOADERS)}, got {variant.loader!r}"
    if variant.precision not in PRECISIONS:
        return f"precision must be one of {', '.join(PRECISIONS)}, got {variant.precision!r}"
    return None
