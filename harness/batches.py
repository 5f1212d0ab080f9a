"""Where training batches come from: two loaders, one interface.

* ``tensor`` (default): the whole split lives on the run's device as one
  normalized float tensor; a batch is an index into it, taken from a fresh
  permutation each epoch. No per-sample Python work, so the step time is the
  model's, not the loader's.
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

LOADERS = ("tensor", "dataloader")


def normalize_split(
    split: TensorSplit, normalize: Callable, device: torch.device, memory_format=torch.contiguous_format
) -> TensorSplit:
    """uint8 images -> normalized float32 on ``device``, once for the whole split.

    ``/ 255`` is what ``ToTensor()`` does to each image; doing it here, once,
    is why the tensor path pays nothing per batch for preprocessing.
    """
    images = split.images.to(device)
    chunks = [normalize(chunk.float().div_(255)) for chunk in images.split(10_000)]
    return TensorSplit(torch.cat(chunks).contiguous(memory_format=memory_format), split.labels.to(device))


class TensorBatches:
    """Shuffled batches from a device-resident split (the ``tensor`` loader)."""

    def __init__(self, split: TensorSplit, batch_size: int, generator: torch.Generator) -> None:
        self.split, self.batch_size, self.generator = split, batch_size, generator

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)  # the last, smaller batch is kept, as DataLoader does

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self.split.images, self.split.labels
        order = torch.randperm(len(labels), generator=self.generator).to(images.device)
        for batch in order.split(self.batch_size):
            yield images[batch], labels[batch]


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
    ) -> None:
        self.device, self.memory_format = device, memory_format
        self.loader = torch.utils.data.DataLoader(
            _Transformed(dataset, indices, _ToTensorNormalize(normalize)),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=device.type == "cuda",
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.loader:
            images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            yield images, labels.to(self.device, non_blocking=True)
