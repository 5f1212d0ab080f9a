"""Benchmarks (b) and (c): the harness loop's overhead over a bare loop, and eval images/s.

(b) Trains the baseline Net with the harness's own ``train_epoch`` and
    ``TrainStep`` and with the plainest loop that does the same work over the
    same device-resident tensors, alternating, several rounds each; prints the
    overhead in percent (median and best-of rounds).
(c) Times the harness's ``evaluate`` on 10,000 test images.

Content does not change speed here, so random tensors stand in for images.

    python benchmarks/loop_and_eval.py [--steps 1000] [--rounds 20] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from cifar_bench.plugins.baseline import Net
from cifar_bench.results.variant import Variant
from cifar_bench.training.batches import TensorBatches
from cifar_bench.training.data import TensorSplit
from cifar_bench.training.environment import cpu_model
from cifar_bench.training.loop import evaluate, train_epoch
from cifar_bench.training.step import TrainStep

BATCH_SIZE = 4  # the baseline's
LR, MOMENTUM = 0.001, 0.9  # the baseline's SGD


def fresh(seed: int):
    torch.manual_seed(seed)
    model = Net()
    return model, torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM), torch.nn.CrossEntropyLoss()


def bare_loop(split: TensorSplit, seed: int) -> float:
    model, optimizer, loss_fn = fresh(seed)
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    images, labels = split.images, split.labels
    start = time.perf_counter()
    for batch in order.split(BATCH_SIZE):
        optimizer.zero_grad()
        loss = loss_fn(model(images[batch]), labels[batch])
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def harness_loop(split: TensorSplit, seed: int) -> float:
    model, optimizer, loss_fn = fresh(seed)
    step = TrainStep(model, loss_fn, optimizer, Variant(), torch.device("cpu"), None, None)
    batches = TensorBatches(split, BATCH_SIZE, torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    train_epoch(step, batches, None, epoch=1, log_every=2000, report=lambda progress: None)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="training steps per timed round [1000]")
    parser.add_argument("--rounds", type=int, default=20, help="rounds, each timing both loops [20]")
    parser.add_argument("--threads", type=int, help="torch CPU threads [torch's default]")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    n = args.steps * BATCH_SIZE
    split = TensorSplit(torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,)))
    bare_loop(split, 0)  # first-call costs (allocator, kernels) are not the loop's
    bare, harness = [], []
    for r in range(args.rounds):
        # ABBA order: whichever loop runs second in a round gets no systematic advantage.
        first, second = (bare_loop, harness_loop) if r % 2 == 0 else (harness_loop, bare_loop)
        a, b = first(split, r), second(split, r)
        bare.append(a if first is bare_loop else b)
        harness.append(b if first is bare_loop else a)
    paired = statistics.median(h / b for h, b in zip(harness, bare, strict=True)) - 1
    best = min(harness) / min(bare) - 1
    print(f"(b) {args.steps} steps of batch {BATCH_SIZE}, {args.rounds} rounds each, ABBA order:")
    print(f"    bare loop    median {statistics.median(bare):.2f} s  best {min(bare):.2f} s "
          f"({1e3 * min(bare) / args.steps:.3f} ms/step)")  # fmt: skip
    print(f"    harness loop median {statistics.median(harness):.2f} s  best {min(harness):.2f} s "
          f"({1e3 * min(harness) / args.steps:.3f} ms/step)")  # fmt: skip
    print(f"    harness overhead: {100 * paired:+.1f}% (median of paired rounds), {100 * best:+.1f}% (best of "
          f"rounds); target <= 3%")  # fmt: skip

    model, _, _ = fresh(0)
    test = TensorSplit(torch.randn(10_000, 3, 32, 32), torch.randint(0, 10, (10_000,)))
    batches = list(zip(test.images.split(1000), test.labels.split(1000), strict=True))
    evaluate(model, batches, 10, Variant(), torch.device("cpu"))  # warm-up
    times = []
    for _ in range(5):
        start = time.perf_counter()
        evaluate(model, batches, 10, Variant(), torch.device("cpu"))
        times.append(time.perf_counter() - start)
    print(f"(c) eval: {10_000 / statistics.median(times):,.0f} images/s (median of 5, batch 1000); target >= 10,000")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, python {platform.python_version()}")  # fmt: skip


if __name__ == "__main__":
    main()
