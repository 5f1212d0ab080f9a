"""cifar-bench-example: a small BatchNorm convnet, a recipe that trains it, and a NaN alarm."""

from __future__ import annotations

import math
import sys

import torch
import torch.nn as nn
from cifar_bench import Recipe, UsageError, hookimpl

DEFAULT_WIDTH = 32  # channels of the first conv layer; each later layer doubles it


class SmallConvNet(nn.Module):
    """Three conv-BN-ReLU-pool stages (32x32 -> 4x4), global average pooling, one linear layer."""

    def __init__(self, num_classes: int = 10, width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        layers, channels = [], 3
        for out in (width, 2 * width, 4 * width):
            layers += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def small_convnet(hyperparameters) -> nn.Module:
    """The model factory: hyperparameters in, a fresh nn.Module out."""
    width = hyperparameters.get("example_width", DEFAULT_WIDTH)
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise UsageError(f"example_width must be a whole number of channels, got {width!r}")
    return SmallConvNet(num_classes=hyperparameters.get("num_classes", 10), width=width)


@hookimpl
def register_models(register):
    register("example_convnet", small_convnet, "3-stage BatchNorm convnet (example_width channels)")


@hookimpl
def register_recipes(register):
    register(
        Recipe(
            name="example",
            dataset="cifar10",
            transform="crop_flip",  # from the built-in augment plugin
            model="example_convnet",
            loss="label_smoothing_ce",  # from the built-in losses plugin
            optimizer="adamw",  # from the built-in optimizers plugin
            scheduler="cosine",  # from the built-in schedules plugin
            hyperparameters={
                "batch_size": 256,  # images per step
                "epochs": 5,  # passes over the training set
                "lr": 0.003,  # AdamW peak learning rate
                "weight_decay": 0.05,  # AdamW decoupled weight decay
                "label_smoothing": 0.1,  # share of each target spread over all classes
                "schedule_per": "step",  # the cosine schedule moves after every batch
                "warmup_fraction": 0.1,  # share of the run ramping lr up from 0
                "example_width": 32,  # channels of the first conv layer
            },
            description="the example plugin's convnet, AdamW and a cosine schedule",
        )
    )


@hookimpl
def epoch_end(run, epoch):
    # An observer: it reads what the harness reports and changes nothing.
    if not math.isfinite(epoch.mean_loss):
        print(
            f"cifar-bench-example: {run.recipe} epoch {epoch.epoch} loss is {epoch.mean_loss}; "
            f"try a lower lr (--set lr=...)",
            file=sys.stderr,
        )
