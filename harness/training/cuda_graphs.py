"""Fast CUDA training steps: cuDNN autotuning, and the step's forward and backward as CUDA graphs.

A small-batch recipe on a GPU (the baseline: batch 4, 25,000 steps) is
bound by kernel launches: each step queues dozens of tiny kernels from
Python, and the GPU waits for them. A CUDA graph records the kernels of
the model's and the loss's forward and backward once and replays them with
one launch each, so the step time is the GPU's again. The optimizer step
and any learning-rate schedule stay eager (``make_graphed_callables``
graphs forward and backward only), which keeps every optimizer and
schedule correct: a graph would freeze a schedule's learning rate.

One graph per training batch shape, captured in the warm-up. The first step
after the warm-up runs eagerly, because the warm-up puts every state back:
a model that initialises itself from its first batch (airbench's
whitening) does that again there, on the real first batch, outside any graph.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch

from ..results.variant import Variant
from .variants import autocast, dtype


def cudnn_autotune(device: torch.device) -> bool | None:
    """Let cuDNN time its algorithms for each new shape (in the warm-up) and keep the fastest.

    Off under ``--deterministic`` (autotuning may pick a different algorithm
    run to run). Returns the setting on a CUDA device, None elsewhere.
    """
    if device.type != "cuda":
        return None
    torch.backends.cudnn.benchmark = not torch.are_deterministic_algorithms_enabled()
    return torch.backends.cudnn.benchmark


def graph_autocast(variant: Variant, device: torch.device) -> AbstractContextManager:
    """The variant's autocast, without its weight-cast cache: graph capture requires that."""
    if variant.precision == "fp32":
        return autocast(variant, device)
    return torch.autocast(device_type=device.type, dtype=dtype(variant.precision), cache_enabled=False)


class _ModelAndLoss(torch.nn.Module):
    """``loss_fn(model(x), y)`` as one module, the unit that is captured (a fresh one per shape)."""

    def __init__(self, model: torch.nn.Module, loss_fn: torch.nn.Module, autocast: AbstractContextManager) -> None:
        super().__init__()
        self.model, self.loss_fn, self.autocast = model, loss_fn, autocast

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.autocast:
            return self.loss_fn(self.model(x), y)


class GraphedLoss:
    """The training loss, from a CUDA graph for each captured batch shape, eagerly otherwise."""

    def __init__(self, model: torch.nn.Module, loss_fn: torch.nn.Module, autocast: AbstractContextManager) -> None:
        self.eager = _ModelAndLoss(model, loss_fn, autocast)
        self.graphs: dict[tuple, Any] = {}
        self.eager_next = True  # see the module's docstring
        self.eager_steps = 0  # steps not replayed from a graph, warm-up included: few, or the graphs missed

    @staticmethod
    def _key(x: torch.Tensor, y: torch.Tensor) -> tuple:
        return tuple(x.shape), x.stride(), x.dtype, tuple(y.shape)

    def capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Capture the graphs for this batch shape (once per shape; the model must be in training mode)."""
        key = self._key(x, y)
        if key not in self.graphs:
            module = _ModelAndLoss(self.eager.model, self.eager.loss_fn, self.eager.autocast)
            # Copies: the sample tensors become the graph's static inputs, overwritten at every replay.
            self.graphs[key] = torch.cuda.make_graphed_callables(module, (x.detach().clone(), y.detach().clone()))
        self.eager_next = True

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        graphed = None if self.eager_next else self.graphs.get(self._key(x, y))
        self.eager_next = False
        if graphed is None:
            self.eager_steps += 1
            return self.eager(x, y)
        return graphed(x, y)

    def shapes(self) -> list[list[int]]:
        return [list(key[0]) for key in self.graphs]
