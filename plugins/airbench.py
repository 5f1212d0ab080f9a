"""A fast recipe in the style of Keller Jordan's airbench94: a small BatchNorm convnet
trained with large batches, label smoothing and Nesterov SGD on a warm-up/decay schedule.

What is kept from airbench94: the network (a frozen 2x2 patch-whitening
layer, three conv groups of conv-pool-BN-GELU-conv-BN-GELU with widths 64,
256, 256, BatchNorm with frozen scales, logits scaled by 1/9), its batch
size, momentum, learning rate and weight decay (re-expressed for a mean
rather than summed loss), the 64x learning rate of BatchNorm biases, label
smoothing 0.2, the 23% warm-up / linear decay schedule, random 2-pixel
translation and flipping, and test-time flipping.

What differs: the whitening layer is fitted on the first training batch
(the harness hands a model factory no data), its bias is dropped, flips are
random rather than alternating, there is no Lookahead averaging and no
translated test-time views, and precision and memory format are left to
the harness's variants (``--channels-last`` roughly halves its step time on
a CPU, as on a GPU).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from cifar_bench import Recipe, UsageError, hookimpl

# airbench94's momentum, from which its learning rate and weight decay follow.
MOMENTUM = 0.85

# The recipe, in one place. lr and weight_decay are airbench94's values for a
# loss summed over the batch (lr 11.5 and decay 0.0153 per 1024 images, each
# divided by 1024 * (1 + 1 / (1 - momentum))), rescaled for the mean loss the
# harness uses: lr x batch_size, and the decay divided by that lr, since
# PyTorch's SGD multiplies its weight_decay by lr.
HYPERPARAMETERS = {
    "batch_size": 1024,  # images per step; scale lr linearly if you change it
    "epochs": 10,  # passes over the training set (airbench94 uses 9.9)
    "lr": 1.5,  # SGD learning rate at the peak of the schedule, for batch 1024
    "momentum": MOMENTUM,  # Nesterov momentum
    "weight_decay": 0.0013305,  # SGD L2 coefficient: 0.002 x lr of decay per step at batch 1024
    "bias_lr_scale": 64.0,  # BatchNorm biases learn this many times faster (same decay per step)
    "label_smoothing": 0.2,  # share of each target spread over all classes
    "crop_padding": 2,  # pixels: random translation by up to 2 in each direction
    "flip": True,  # random horizontal flip of each training image
    "tta_flip": True,  # evaluate on each test image and its mirror image, averaging the logits
    "schedule_per": "step",  # the schedule moves after every batch
    "warmup_fraction": 0.23,  # share of the run spent ramping lr up ...
    "start_lr_fraction": 0.2,  # ... from 0.2 x lr ...
    "final_lr_fraction": 0.07,  # ... then down to 0.07 x lr at the end
    "widths": [64, 256, 256],  # channels of the three conv groups
    "batchnorm_momentum": 0.6,  # share of the old running mean/var kept at each step
    "whiten_eps": 5e-4,  # added to patch-covariance eigenvalues before whitening
    "logit_scale": 1 / 9,  # multiplies the logits: a softer start than a plain linear head
    "log_every": 10,  # steps between loss lines (an epoch is 49 steps)
}

# A variant that fits a 2-core CPU: the same recipe with narrower conv groups.
NARROW_WIDTHS = [32, 64, 64]

WHITEN_PATCH = 2  # pixels: the whitening layer sees 2x2 patches


class Conv(nn.Conv2d):
    """3x3 'same' convolution without bias, its first filters set to the identity (as airbench)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        # Starting part of each layer as a pass-through speeds up the first epoch.
        nn.init.dirac_(self.weight.data[: min(self.in_channels, self.out_channels)])


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm with a fixed scale of 1 (only the bias learns) and airbench's momentum convention."""

    def __init__(self, channels: int, momentum: float) -> None:
        super().__init__(channels, eps=1e-12, momentum=1 - momentum)
        self.weight.requires_grad = False


class ConvGroup(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, momentum: float) -> None:
        super().__init__(
            Conv(in_channels, out_channels),
            nn.MaxPool2d(2),
            BatchNorm(out_channels, momentum),
            nn.GELU(),
            Conv(out_channels, out_channels),
            BatchNorm(out_channels, momentum),
            nn.GELU(),
        )


class AirbenchNet(nn.Module):
    """airbench94's network. ``tta_flip`` averages the logits of each image and its mirror in eval mode.

    The whitening filters are fitted to the first batch seen in training mode
    and then stay fixed; a model loaded from a state dict is marked as fitted.
    """

    def __init__(
        self,
        num_classes: int = 10,
        widths: Sequence[int] = (64, 256, 256),
        batchnorm_momentum: float = 0.6,
        logit_scale: float = 1 / 9,
        whiten_eps: float = 5e-4,
        tta_flip: bool = True,
    ) -> None:
        super().__init__()
        whiten_width = 2 * 3 * WHITEN_PATCH**2  # each whitened direction and its negative
        self.whiten = nn.Conv2d(3, whiten_width, WHITEN_PATCH, padding=0, bias=False)
        self.whiten.weight.requires_grad = False
        self.register_buffer("whitened", torch.tensor(False))
        self._whitened = False  # a Python copy of the buffer: reading the tensor would sync a GPU
        self.body = nn.Sequential(
            nn.GELU(),
            ConvGroup(whiten_width, widths[0], batchnorm_momentum),
            ConvGroup(widths[0], widths[1], batchnorm_momentum),
            ConvGroup(widths[1], widths[2], batchnorm_momentum),
            nn.MaxPool2d(3),
            nn.Flatten(),
            nn.Linear(widths[2], num_classes, bias=False),
        )
        self.logit_scale, self.whiten_eps, self.tta_flip = logit_scale, whiten_eps, tta_flip

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._whitened = bool(self.whitened)

    @torch.no_grad()
    def fit_whitening(self, images: torch.Tensor) -> None:
        """Set the whitening filters so that the 2x2 patches of ``images`` come out decorrelated."""
        c, k = images.shape[1], WHITEN_PATCH
        patches = images.unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H-1, W-1, k, k)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k).float()
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + self.whiten_eps)[:, None]).flip(0)
        filters = filters.reshape(c * k * k, c, k, k)
        self.whiten.weight.copy_(torch.cat((filters, -filters)).to(self.whiten.weight.dtype))
        self.whitened.fill_(True)
        self._whitened = True

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.whiten(x)) * self.logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not self._whitened:
            self.fit_whitening(x)
        if not self.training and self.tta_flip:
            return 0.5 * (self.logits(x) + self.logits(x.flip(3)))
        return self.logits(x)


def _widths(hyperparameters) -> list[int]:
    widths = hyperparameters.get("widths", HYPERPARAMETERS["widths"])
    if (
        not isinstance(widths, (list, tuple))
        or len(widths) != 3
        or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths)
    ):
        raise UsageError(f"widths must be three whole numbers of channels, such as [64, 256, 256], got {widths!r}")
    return list(widths)


def airbench_net(hyperparameters) -> nn.Module:
    return AirbenchNet(
        num_classes=hyperparameters.get("num_classes", 10),
        widths=_widths(hyperparameters),
        batchnorm_momentum=hyperparameters.get("batchnorm_momentum", HYPERPARAMETERS["batchnorm_momentum"]),
        logit_scale=hyperparameters.get("logit_scale", HYPERPARAMETERS["logit_scale"]),
        whiten_eps=hyperparameters.get("whiten_eps", HYPERPARAMETERS["whiten_eps"]),
        tta_flip=bool(hyperparameters.get("tta_flip", HYPERPARAMETERS["tta_flip"])),
    )


def airbench_sgd(parameters, hyperparameters) -> torch.optim.Optimizer:
    """Nesterov SGD in two groups: weights, and biases/norm parameters at ``bias_lr_scale`` x lr.

    The bias group's weight decay is divided by the same factor, because
    PyTorch multiplies weight decay by lr: both groups decay alike per step.
    """
    lr, decay = hyperparameters["lr"], hyperparameters.get("weight_decay", 0.0)
    scale = hyperparameters.get("bias_lr_scale", HYPERPARAMETERS["bias_lr_scale"])
    trainable = [p for p in parameters if p.requires_grad]
    weights = [p for p in trainable if p.ndim > 1]
    biases = [p for p in trainable if p.ndim <= 1]
    groups = [{"params": weights, "lr": lr, "weight_decay": decay}]
    if biases:
        groups.append({"params": biases, "lr": lr * scale, "weight_decay": decay / scale})
    return torch.optim.SGD(groups, lr=lr, momentum=hyperparameters.get("momentum", MOMENTUM), nesterov=True)


def _recipe(name: str, description: str, **changes) -> Recipe:
    return Recipe(
        name=name,
        dataset="cifar10",
        transform="crop_flip",
        model="airbench",
        loss="label_smoothing_ce",
        optimizer="airbench_sgd",
        scheduler="linear",
        hyperparameters={**HYPERPARAMETERS, **changes},
        description=description,
    )


@hookimpl
def register_models(register):
    register("airbench", airbench_net, "airbench94's whitened BatchNorm convnet (widths, tta_flip)")


@hookimpl
def register_optimizers(register):
    register("airbench_sgd", airbench_sgd, "Nesterov SGD, biases and norms at bias_lr_scale x lr")


@hookimpl
def register_recipes(register):
    register(_recipe("airbench", "airbench94-style: batch 1024, label smoothing, Nesterov, warm-up/decay"))
    register(
        _recipe(
            "airbench_narrow",
            f"the airbench recipe with conv widths {NARROW_WIDTHS}: sized for a CPU",
            widths=NARROW_WIDTHS,
        )
    )
