"""The tensor loader's uint8 layout against normalizing the whole split once: train and eval throughput.

Both loops train the baseline's Net on the same images, in the same order, with the harness's
TrainStep and train_epoch, one fed from a float split normalized up front (the earlier layout),
one from the uint8 split normalized block by block (today's); then both evaluate the test set.
Rounds alternate the order (ABBA) so that neither gets a systematic advantage on a shared machine.
One thread, as the harness's CPU tuning picks for the batch-4 baseline (two threads at batch 4 mostly wait).

    python benchmarks/uint8_loader.py --rounds 6 --steps 2000 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchvision import transforms

from cifar_bench.plugins.baseline import Net
from cifar_bench.results.variant import Variant
from cifar_bench.training.batches import TensorBatches, normalize_split
from cifar_bench.training.data import TensorSplit
from cifar_bench.training.loop import evaluate, train_epoch
from cifar_bench.training.step import TrainStep

NORMALIZE = transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
CPU = torch.device("cpu")


def eval_only(model: torch.nn.Module, test: TensorSplit, uint8: bool) -> float:
    if uint8:
        batches = TensorBatches(test, 1000, None, normalize=NORMALIZE)
    else:
        batches = TensorBatches(normalize_split(test, NORMALIZE, CPU), 1000, None)
    start = time.perf_counter()
    evaluate(model, batches, 10, Variant(), CPU)
    return time.perf_counter() - start


def loops(train: TensorSplit, test: TensorSplit, seed: int, uint8: bool) -> tuple[float, float]:
    torch.manual_seed(seed)
    model = Net()
    step = TrainStep(model, torch.nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9),
                     Variant(), CPU, None, None)  # fmt: skip
    if uint8:
        train_batches = TensorBatches(train, 4, torch.Generator().manual_seed(seed), normalize=NORMALIZE)
        test_batches = TensorBatches(test, 1000, None, normalize=NORMALIZE)
    else:
        train_batches = TensorBatches(normalize_split(train, NORMALIZE, CPU), 4, torch.Generator().manual_seed(seed))
        test_batches = TensorBatches(normalize_split(test, NORMALIZE, CPU), 1000, None)
    start = time.perf_counter()
    train_epoch(step, train_batches, None, epoch=1, log_every=10**9, report=lambda progress: None)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    evaluate(step.model, test_batches, 10, Variant(), CPU)
    return train_s, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps (batch 4) per loop [2000]")
    parser.add_argument("--test", type=int, default=10_000, help="test images evaluated per loop [10000]")
    parser.add_argument("--rounds", type=int, default=6, help="rounds, each timing both layouts [6]")
    parser.add_argument("--threads", type=int, help="torch CPU threads [torch's default]")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    train = TensorSplit(torch.randint(0, 256, (args.steps * 4, 3, 32, 32), dtype=torch.uint8, generator=g),
                        torch.randint(0, 10, (args.steps * 4,), generator=g))  # fmt: skip
    test = TensorSplit(torch.randint(0, 256, (args.test, 3, 32, 32), dtype=torch.uint8, generator=g),
                       torch.randint(0, 10, (args.test,), generator=g))  # fmt: skip
    loops(train, test, 0, True)  # first-call costs are neither layout's
    trains: dict[bool, list[float]] = {False: [], True: []}
    for r in range(args.rounds):
        for uint8 in (False, True) if r % 4 in (0, 3) else (True, False):
            trains[uint8].append(loops(train, test, r, uint8)[0])
    # Evaluation alone, four times as many rounds: it is short, so its noise needs more of them.
    model = Net()
    evals: dict[bool, list[float]] = {False: [], True: []}
    for r in range(4 * args.rounds):
        for uint8 in (False, True) if r % 4 in (0, 3) else (True, False):
            evals[uint8].append(eval_only(model, test, uint8))
    for name, uint8 in (("float, normalized once", False), ("uint8, per block", True)):
        train_img_s = args.steps * 4 / statistics.median(trains[uint8])
        eval_img_s = args.test / statistics.median(evals[uint8])
        print(f"{name:24} train {train_img_s:8.0f} img/s   eval {eval_img_s:8.0f} img/s")
    train_ratio = statistics.median(a / b for a, b in zip(trains[True], trains[False], strict=True))
    eval_ratio = statistics.median(a / b for a, b in zip(evals[True], evals[False], strict=True))
    print(f"uint8 / float time, median of paired rounds: train {train_ratio:.3f}, eval {eval_ratio:.3f}")


if __name__ == "__main__":
    main()
