"""Where training batches come from: two loaders, one interface.

* ``tensor`` (default): the whole split lives on the run's device as the
  decoded ``uint8`` images (a quarter of float32's memory); batches are
  indices into it, taken from a fresh permutation each epoch, and turned into
  float and normalized there, on the device, a block of batches at a time.
  No per-sample Python work, so the step time is the model's, not the loader's.
* ``dataloader``: the tutorial's own pipeline, ``torch.utils.data.DataLoader``
  with ``shuffle=True``, two workers and per-sample ``ToTensor`` + normalize.
  Kept so that the fast path can always be checked against the original.

Both yield ``(images, labels)`` already on the device and normalized; random
augmentation happens afterwards, in the training loop, the same for both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torchvision import transforms

from .data import TensorSplit
from .world import SINGLE, World

BLOCK_IMAGES = 1024  # images normalized at once by the tensor loader: 12 MiB as float32 at 32x32x3


def to_device(split: TensorSplit, device: torch.device) -> TensorSplit:
    """The split on ``device``, images still ``uint8``: what the ``tensor`` loader keeps resident."""
    return TensorSplit(split.images.to(device), split.labels.to(device))


def normalize_batch(images: torch.Tensor, normalize: Callable, memory_format=torch.contiguous_format) -> torch.Tensor:
    """uint8 images -> normalized float32, in their memory format.

    ``/ 255`` is what ``ToTensor()`` does to each image. Done per batch, on
    the batch's device: every operation is elementwise, so a batch comes out
    bit for bit as it would from normalizing the whole split at once.
    """
    x = torch.div(images, 255)  # uint8 in, float32 out, in one pass: the same values as .float().div_(255)
    if isinstance(normalize, transforms.Normalize):  # the usual case: the same arithmetic, in place (no copy)
        x = transforms.functional.normalize(x, normalize.mean, normalize.std, inplace=True)
    else:
        x = normalize(x)
    return x.contiguous(memory_format=memory_format)


def normalize_split(
    split: TensorSplit, normalize: Callable, device: torch.device, memory_format=torch.contiguous_format
) -> TensorSplit:
    """uint8 images -> normalized float32 on ``device``, once for the whole split (4x the memory of uint8)."""
    images = split.images.to(device)
    chunks = [normalize(chunk.float().div_(255)) for chunk in images.split(10_000)]
    return TensorSplit(torch.cat(chunks).contiguous(memory_format=memory_format), split.labels.to(device))


class TensorBatches:
    """Batches from a device-resident split (the ``tensor`` loader).

    ``batch_size`` is the global batch; in a data-parallel run each rank
    yields its own block of every global batch (see :mod:`.distributed`).
    With a ``normalize``, the split holds ``uint8`` images and each batch is
    normalized as it is taken; without one, the split is used as it is.
    ``generator=None`` walks the split in order (evaluation).
    """

    def __init__(
        self,
        split: TensorSplit,
        batch_size: int,
        generator: torch.Generator | None,
        world: World = SINGLE,
        normalize: Callable | None = None,
        memory_format=torch.contiguous_format,
    ) -> None:
        self.split, self.batch_size, self.generator, self.world = split, batch_size, generator, world
        self.normalize, self.memory_format = normalize, memory_format

    def batch_sizes(self) -> list[int]:
        """The sizes of this rank's batches: full ones, then a smaller last one, as DataLoader does.

        In a data-parallel run the last one shrinks to what splits evenly among the ranks, or goes.
        """
        full, rest = divmod(len(self.split), self.batch_size)
        last = len(self.world.shard_batch(torch.arange(rest)))
        return [self.batch_size // self.world.size] * (full > 0) + [last] * (last > 0)

    def __len__(self) -> int:
        full, rest = divmod(len(self.split), self.batch_size)
        return full + (len(self.world.shard_batch(torch.arange(rest))) > 0)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Stored images -> the model's input (normalized, in the run's memory format)."""
        if self.normalize is None:
            return images
        return normalize_batch(images, self.normalize, self.memory_format)

    def first_of_each_size(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One batch of each size this loader yields, ready for the model (for the warm-up)."""
        images, labels = self.split.images, self.split.labels
        return [(self.prepare(images[:k]), labels[:k]) for k in self.batch_sizes()]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self.split.images, self.split.labels
        if self.generator is None:  # in order (evaluation)
            order = torch.arange(len(labels), device=images.device)
        else:
            order = torch.randperm(len(labels), generator=self.generator).to(images.device)
        # In a data-parallel run each rank keeps its block of every global batch.
        batches = [b for b in (self.world.shard_batch(b) for b in order.split(self.batch_size)) if len(b)]
        # A block of whole batches is taken and normalized at once, then handed out batch by batch as
        # views: one gather and one normalize per block instead of per batch (a batch-4 step would pay
        # more for its preprocessing than for its convolutions), and only a block is ever float.
        per_block = max(1, BLOCK_IMAGES // self.batch_size)
        for first in range(0, len(batches), per_block):
            block = batches[first : first + per_block]
            sizes = [len(b) for b in block]
            if self.generator is None and self.world.size == 1:  # in order: a slice, no gather
                start = first * self.batch_size
                x, y = images[start : start + sum(sizes)], labels[start : start + sum(sizes)]
            else:
                index = torch.cat(block)
                x, y = images[index], labels[index]
            yield from zip(self.prepare(x).split(sizes), y.split(sizes), strict=True)


class _ToTensorNormalize:
    """The per-sample transform of the DataLoader path (a class, so workers can pickle it)."""

    def __init__(self, normalize: Callable) -> None:
        self.to_tensor, self.normalize = transforms.ToTensor(), normalize

    def __call__(self, image):
        return self.normalize(self.to_tensor(image).unsqueeze(0)).squeeze(0)


class _Transformed(torch.utils.data.Dataset):
    def __init__(self, base, indices, transform) -> None:
        self.base, self.indices, self.transform = base, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        image, label = self.base[int(self.indices[i])]
        return self.transform(image), label


class LoaderBatches:
    """The tutorial's DataLoader pipeline (the ``dataloader`` loader)."""

    def __init__(
        self,
        dataset: torch.utils.data.Dataset,
        indices: torch.Tensor,
        normalize: Callable,
        batch_size: int,
        device: torch.device,
        memory_format=torch.contiguous_format,
        *,
        shuffle: bool,
        generator: torch.Generator | None = None,
        num_workers: int = 2,  # the tutorial's
        world: World = SINGLE,
        seed: int = 0,
    ) -> None:
        self.device, self.memory_format = device, memory_format
        data = _Transformed(dataset, indices, _ToTensorNormalize(normalize))
        # A data-parallel run shuffles with a DistributedSampler: each rank its share of one permutation.
        self.sampler = world.sampler(data, seed) if shuffle else None
        self.epoch = 0
        self.loader = torch.utils.data.DataLoader(
            data,
            batch_size=batch_size,
            shuffle=shuffle and self.sampler is None,
            sampler=self.sampler,
            generator=generator,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=device.type == "cuda",
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.sampler is not None:  # a new permutation each epoch, the same on every rank
            self.sampler.set_epoch(self.epoch)
            self.epoch += 1
        for images, labels in self.loader:
            images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            yield images, labels.to(self.device, non_blocking=True)
