"""The tensor loader keeps uint8 images on the device and normalizes each batch there."""

from __future__ import annotations

import pytest
import torch
from torchvision import transforms

from cifar_bench.hooks import manager
from cifar_bench.hooks.registry import collect
from cifar_bench.results.variant import Variant
from cifar_bench.training import setup
from cifar_bench.training.batches import TensorBatches, normalize_split, to_device
from cifar_bench.training.config import RunConfig
from cifar_bench.training.data import TensorSplit
from cifar_bench.training.session import Session
from cifar_bench.training.setup import _warmup_batches
from cifar_bench.training.world import World


def split_of(n: int, seed: int = 0) -> TensorSplit:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    return TensorSplit(images, torch.randint(0, 10, (n,), generator=g))


NORMALIZE = transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("world", [World(), World(rank=1, size=2)])
def test_per_batch_normalization_is_bit_for_bit_the_normalize_once_path(memory_format, world):
    split = split_of(103)
    once = normalize_split(split, NORMALIZE, torch.device("cpu"), memory_format)
    before = TensorBatches(once, 8, torch.Generator().manual_seed(5), world)
    after = TensorBatches(split, 8, torch.Generator().manual_seed(5), world, NORMALIZE, memory_format)
    pairs = list(zip(before, after, strict=True))
    assert len(pairs) == len(after) > 1
    for (x0, y0), (x1, y1) in pairs:
        assert x1.dtype == torch.float32 and torch.equal(x0, x1) and torch.equal(y0, y1)
        assert x1.is_contiguous(memory_format=memory_format)
    assert split.images.dtype == torch.uint8  # what stays resident


def test_evaluation_batches_walk_the_split_in_order_normalized():
    split = split_of(25)
    once = normalize_split(split, NORMALIZE, torch.device("cpu"))
    batches = list(TensorBatches(split, 10, None, normalize=NORMALIZE))
    assert [len(y) for _, y in batches] == [10, 10, 5]
    assert torch.equal(torch.cat([x for x, _ in batches]), once.images)
    assert torch.equal(torch.cat([y for _, y in batches]), split.labels)


def test_warm_up_gets_one_normalized_batch_of_each_size():
    split = split_of(25)
    once = normalize_split(split, NORMALIZE, torch.device("cpu"))
    shapes = _warmup_batches(TensorBatches(split, 10, torch.Generator(), normalize=NORMALIZE))
    assert [len(y) for _, y in shapes] == [10, 5]
    assert all(torch.equal(x, once.images[: len(x)]) for x, _ in shapes)


def test_the_run_keeps_the_training_split_uint8_and_the_test_split_normalized_once(monkeypatch):
    kept = []
    original = setup._batches

    def spy(*args, **kwargs):
        train, test = original(*args, **kwargs)
        kept.extend([train.split.images.dtype, test.split.images.dtype])
        return train, test

    monkeypatch.setattr(setup, "_batches", spy)
    plugins = manager.build()
    config = RunConfig("baseline", dataset="synthetic", limit_train=40, limit_test=20, cache_dir=None,
                       hyperparameters={"epochs": 1})  # fmt: skip
    record = Session(plugins, collect(plugins)).run(config).record
    assert record.status == "ok", record.error
    assert kept == [torch.uint8, torch.float32]  # the training split is 5x larger: uint8; evaluation: no per-batch work


def test_to_device_keeps_the_dtype():
    split = split_of(4)
    moved = to_device(split, torch.device("cpu"))
    assert moved.images.dtype == torch.uint8 and torch.equal(moved.images, split.images)


def test_a_run_gives_the_same_losses_and_accuracy_as_normalizing_the_split_once(monkeypatch):
    """The whole run, against the earlier layout (the split normalized to float once, up front)."""

    def normalized_once(run, transform, shuffle):
        data, hp, device, config, world = run.data, run.hp, run.device, run.config, run.world
        memory_format = torch.channels_last if config.variant.channels_last else torch.contiguous_format
        train = normalize_split(data.train.subset(data.train_indices), transform.normalize, device, memory_format)
        test = normalize_split(data.test.subset(data.test_indices), transform.normalize, device, memory_format)
        return TensorBatches(train, hp["batch_size"], shuffle, world), TensorBatches(test, hp["eval_batch_size"], None)

    plugins = manager.build()
    # CPU tuning off: it picks kernels by timing them, and different kernels round differently.
    config = RunConfig("airbench_narrow", dataset="synthetic", limit_train=96, limit_test=40, cache_dir=None,
                       cpu_tune=False, hyperparameters={"epochs": 2, "batch_size": 32, "eval_batch_size": 16},
                       variant=Variant(channels_last=True))  # fmt: skip
    now = Session(plugins, collect(plugins)).run(config).record
    monkeypatch.setattr(setup, "_batches", normalized_once)
    before = Session(plugins, collect(plugins)).run(config).record
    assert now.status == before.status == "ok", (now.error, before.error)
    assert now.metrics.epoch_loss == before.metrics.epoch_loss
    assert now.metrics.test_accuracy == before.metrics.test_accuracy
    assert now.metrics.per_class_accuracy == before.metrics.per_class_accuracy


def test_a_plugins_own_normalize_is_applied_to_each_block_as_to_the_whole_split():
    def scale(x):  # not a torchvision Normalize: called as it is
        return x * 2 - 1

    split = split_of(30)
    once = normalize_split(split, scale, torch.device("cpu"))
    batches = list(TensorBatches(split, 7, None, normalize=scale))
    assert torch.equal(torch.cat([x for x, _ in batches]), once.images)
