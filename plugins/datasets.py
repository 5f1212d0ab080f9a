"""Built-in datasets: CIFAR-10 (downloaded, or an ImageFolder copy) and a synthetic set."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from cifar_bench import DataError, Dataset, DataSource, fingerprint_arrays, hookimpl, read_image_folder


def cifar10(source: DataSource) -> Dataset:
    """torchvision's CIFAR-10 under ``source.root`` (downloaded as the tutorial does),
    or the ImageFolder copy at ``source.data_dir`` when one is given."""
    if source.data_dir:
        return read_image_folder(source.data_dir, name="cifar10")
    from torchvision.datasets import CIFAR10

    try:
        train = CIFAR10(root=source.root, train=True, download=source.download)
        test = CIFAR10(root=source.root, train=False, download=source.download)
    except Exception as exc:  # no network, no disk space, a corrupt archive ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"CIFAR-10 is not in {source.root} and could not be fetched ({reason}): "
            "pass --data-dir DIR with an ImageFolder copy (DIR/train/<class>/*, DIR/test/<class>/*)"
        ) from None
    return Dataset(
        name="cifar10",
        classes=list(train.classes),
        train=train,
        test=test,
        fingerprint=fingerprint_arrays(train.data, np.asarray(train.targets), test.data),
        source=f"torchvision CIFAR10 in {source.root}",
    )


class ArrayDataset(torch.utils.data.Dataset):
    """``(PIL image, label)`` pairs over an ``(N, H, W, C)`` uint8 array, like torchvision's CIFAR10."""

    def __init__(self, data: np.ndarray, targets: np.ndarray) -> None:
        self.data, self.targets = data, [int(t) for t in targets]

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        return Image.fromarray(self.data[i]), self.targets[i]


def make_synthetic(train_size: int = 2000, test_size: int = 500, seed: int = 0) -> Dataset:
    """Random 32x32 images whose class sets a colour tint: learnable in a few steps, and
    marked ``synthetic`` so that no result made from it passes for CIFAR-10."""
    rng = np.random.default_rng(seed)
    tints = rng.integers(0, 256, size=(10, 1, 1, 3))

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % 10
        noise = rng.integers(0, 256, size=(n, 32, 32, 3))
        images = (0.5 * noise + 0.5 * tints[labels]).astype(np.uint8)
        return images, labels

    (train_x, train_y), (test_x, test_y) = split(train_size), split(test_size)
    return Dataset(
        name="synthetic",
        classes=[f"class{c}" for c in range(10)],
        train=ArrayDataset(train_x, train_y),
        test=ArrayDataset(test_x, test_y),
        fingerprint=fingerprint_arrays(train_x, train_y, test_x, test_y),
        synthetic=True,
        source=f"synthetic (seed {seed}): not real data",
    )


def synthetic(source: DataSource) -> Dataset:
    if source.data_dir:
        raise DataError("the synthetic dataset reads no files: drop --data-dir, or use --dataset cifar10")
    return make_synthetic()


@hookimpl
def register_datasets(register):
    register("cifar10", cifar10, "CIFAR-10: torchvision download into ./data, or --data-dir DIR")
    register("synthetic", synthetic, "2,000/500 random tinted images for smoke runs (not real data)")
