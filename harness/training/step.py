"""One optimizer step under the run's variant (precision, memory format, compile, CUDA graphs), and the
warm-up that primes it.

Kept apart from the loop so that the loop reads as the tutorial's and the variant plumbing lives in one
place.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any

import torch

from ..errors import UsageError
from ..results.schema import CpuInfo
from ..results.variant import Variant
from . import cuda_graphs, tuning
from .config import PROGRESS_EVERY
from .tuning import TuningRequest
from .variants import autocast
from .world import SINGLE, World


class TrainStep:
    """One optimizer step under the run's variant: call it with a batch, it returns the (detached) loss."""

    def __init__(self, model, loss_fn, optimizer, variant: Variant, device, augment, augment_rng,
                 world: World = SINGLE) -> None:  # fmt: skip
        if variant.cuda_graph and world.distributed:
            raise UsageError("--cuda-graph runs in one process: drop --nproc or --cuda-graph")
        self.model = torch.compile(model) if variant.compile else model
        # Training steps go through DistributedDataParallel in a data-parallel run (its backward averages
        # gradients over ranks); evaluation and state use the model itself, which needs no other rank.
        self.train_model = world.wrap(self.model, device)
        self.loss_fn, self.optimizer, self.device = loss_fn, optimizer, device
        self.augment, self.augment_rng = augment, augment_rng
        self.autocast = autocast(variant, device)
        self.cpu, self.decision = tuning.current(), None  # settings to train with; see warm_up
        self.cudnn_benchmark = cuda_graphs.cudnn_autotune(device)  # cuDNN times its kernels in the warm-up
        self.graphed = None
        if variant.cuda_graph:
            self.graphed = cuda_graphs.GraphedLoss(model, loss_fn, cuda_graphs.graph_autocast(variant, device))
        # fp16 gradients underflow without loss scaling; bf16 and fp32 need none.
        self.scaler = torch.amp.GradScaler(device.type) if variant.precision == "fp16" else None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.augment is not None:
            x = self.augment(x, self.augment_rng)
        self.optimizer.zero_grad()
        if self.graphed is not None:
            loss = self.graphed(x, y)
        else:
            with self.autocast:
                loss = self.loss_fn(self.train_model(x), y)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return loss.detach()

    def warm_up(self, train_batches, eval_batches, tuning: TuningRequest | None = None,
                tuning_batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:  # fmt: skip
        """Run each batch shape once (and choose the CPU settings), then put every state back as it was.

        Compiles (and primes kernels and caches) for the training and the
        evaluation shapes, so that none of that lands in train or eval time,
        while weights, optimizer state and random streams stay exactly as if
        it had never happened.

        Tuning times training steps as training runs them: batches from
        ``tuning_batches`` (the run's own loader, with a shuffle of its own so
        that the run's batch order is untouched) and, every PROGRESS_EVERY
        steps, the wait for the loss that a progress report makes.
        """
        saved = (
            copy.deepcopy(self.model.state_dict()),
            copy.deepcopy(self.optimizer.state_dict()),
            self.scaler.state_dict() if self.scaler else None,
            torch.get_rng_state(),
            self.augment_rng.get_state(),
        )
        self.model.train()
        for x, y in train_batches:
            self(x, y)
            if self.graphed is not None:  # captured on the batch as the step sees it: augmented
                self.graphed.capture(self.augment(x, self.augment_rng) if self.augment else x, y)
        if tuning is not None:
            batches = tuning_batches or itertools.cycle(train_batches)
            steps = itertools.count(1)

            def step() -> None:
                loss = self(*next(batches))
                if next(steps) % PROGRESS_EVERY == 0:
                    loss.item()

            self.decision = tuning.decide(step)
            self.cpu = self.decision.settings
        for x, _ in eval_batches:
            with torch.inference_mode(), self.autocast:
                self.model.eval()
                self.model(x)
        model_state, optimizer_state, scaler_state, rng, augment_rng = saved
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(optimizer_state)
        if self.scaler:
            self.scaler.load_state_dict(scaler_state)
        torch.set_rng_state(rng)
        self.augment_rng.set_state(augment_rng)
        self.optimizer.zero_grad()

    def cuda_settings(self) -> dict[str, Any]:
        """What this step does to be fast on CUDA (recorded with the run's CUDA event timings)."""
        shapes = self.graphed.shapes() if self.graphed is not None else []
        eager = self.graphed.eager_steps if self.graphed is not None else None
        return {"cudnn_benchmark": self.cudnn_benchmark, "cuda_graph": self.graphed is not None,
                "graphed_shapes": shapes, "eager_steps": eager}  # fmt: skip

    def cpu_record(self) -> CpuInfo:
        if self.decision is not None:
            return self.decision.to_record()
        return CpuInfo(threads=self.cpu.threads, onednn=self.cpu.onednn)
