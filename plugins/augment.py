"""Standard CIFAR augmentation: per-image random crop (from a padded image) and horizontal flip.

Augmentation runs on whole normalized batches on the run's device (see
:class:`cifar_bench.Transform`), so every random choice is drawn for all
images at once from the run's generator, one draw per image, and applied by
indexing: no Python loop over images, and the same seed gives the same batch.

Hyperparameters read (a recipe's values, or ``--set``):

* ``crop_padding``: pixels of reflection padding on each side before the
  32x32 crop, i.e. the largest shift; 0 turns cropping off.
* ``flip``: flip each image left-right with probability 1/2 (true/false).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision import transforms

from cifar_bench import Transform, UsageError, hookimpl

# Per-channel mean and standard deviation of the 50,000 CIFAR-10 training
# images, pixel values in [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

DEFAULT_CROP_PADDING = 4  # pixels: the usual ResNet-on-CIFAR setting
DEFAULT_FLIP = True


class CropFlip:
    """``augment(x, generator)``: an independent random crop and flip for each image of ``x``.

    A class rather than a closure so that it pickles, as a DataLoader worker
    started by "spawn" needs.
    """

    def __init__(self, padding: int, flip: bool) -> None:
        self.padding, self.flip = padding, flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.padding:
            x = random_crop(x, self.padding, generator)
        if self.flip:
            x = random_flip(x, generator)
        return x

    def __repr__(self) -> str:
        return f"CropFlip(padding={self.padding}, flip={self.flip})"


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Crop each image of ``(N, C, H, W)`` at its own offset from the image padded by reflection.

    Reflection rather than zeros because the batch is already normalized:
    a zero there is the mean colour, not the black border torchvision would pad.
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, mode="reflect")
    shifts = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=generator.device)
    shifts = shifts.to(x.device)
    rows = (shifts[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (shifts[1, :, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (N, 1, 1, W)
    images = torch.arange(n, device=x.device)[:, None, None, None]
    channels = torch.arange(c, device=x.device)[None, :, None, None]
    cropped = padded[images, channels, rows, cols]
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        cropped = cropped.contiguous(memory_format=torch.channels_last)  # keep --channels-last batches NHWC
    return cropped


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image of ``(N, C, H, W)`` left-right with probability 1/2, independently."""
    flip = torch.rand(x.shape[0], generator=generator, device=generator.device) < 0.5
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(3), x)


def _padding(hyperparameters) -> int:
    padding = hyperparameters.get("crop_padding", DEFAULT_CROP_PADDING)
    if not isinstance(padding, int) or isinstance(padding, bool) or not 0 <= padding < 32:
        raise UsageError(f"crop_padding must be a whole number of pixels from 0 to 31, got {padding!r}")
    return padding


def _flip(hyperparameters) -> bool:
    flip = hyperparameters.get("flip", DEFAULT_FLIP)
    if not isinstance(flip, bool):
        raise UsageError(f"flip must be true or false, got {flip!r}")
    return flip


def cifar10_normalize() -> transforms.Normalize:
    return transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)


def crop_flip(hyperparameters) -> Transform:
    return Transform(normalize=cifar10_normalize(), augment=CropFlip(_padding(hyperparameters), _flip(hyperparameters)))


def flip_only(hyperparameters) -> Transform:
    return Transform(normalize=cifar10_normalize(), augment=CropFlip(0, True))


def normalize_only(hyperparameters) -> Transform:
    return Transform(normalize=cifar10_normalize())


@hookimpl
def register_transforms(register):
    register(
        "crop_flip",
        crop_flip,
        "CIFAR-10 mean/std, then per-image random crop (crop_padding px, reflect) and flip",
    )
    register("flip", flip_only, "CIFAR-10 mean/std, then per-image random horizontal flip")
    register("cifar_normalize", normalize_only, "CIFAR-10 mean/std only, no augmentation")
