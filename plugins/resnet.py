"""ResNet-18 for 32x32 images, and a recipe that trains it the usual way.

The CIFAR variant of He et al.'s ResNet-18: a 3x3 stem with no max-pool (an
ImageNet stem would shrink a 32x32 image to 8x8 before the first block), then
four stages of two basic blocks at 64, 128, 256 and 512 channels, global
average pooling and one linear layer: 11.2 M parameters.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cifar_bench import Recipe, hookimpl

STAGE_WIDTHS = (64, 128, 256, 512)  # channels of the four stages
BLOCKS_PER_STAGE = (2, 2, 2, 2)  # ResNet-18: 2 x 4 basic blocks x 2 convs + stem + fc = 18 layers


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        widths: tuple[int, ...] = STAGE_WIDTHS,
        blocks: tuple[int, ...] = BLOCKS_PER_STAGE,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        layers, channels = [], widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            for block in range(count):
                stride = 2 if stage > 0 and block == 0 else 1  # halve the resolution entering stages 2-4
                layers.append(BasicBlock(channels, width, stride))
                channels = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet18(hyperparameters) -> nn.Module:
    return ResNet(num_classes=hyperparameters.get("num_classes", 10))


@hookimpl
def register_models(register):
    register("resnet18", resnet18, "ResNet-18 for 32x32 inputs (3x3 stem, no max-pool), 11.2 M parameters")


@hookimpl
def register_recipes(register):
    register(
        Recipe(
            name="resnet18",
            dataset="cifar10",
            transform="crop_flip",
            model="resnet18",
            loss="label_smoothing_ce",
            optimizer="nesterov_sgd",
            scheduler="cosine",
            hyperparameters={
                "batch_size": 256,  # images per step
                "epochs": 30,  # passes over the training set
                "lr": 0.2,  # peak SGD learning rate, for batch 256 (0.1 per 128 images)
                "momentum": 0.9,  # SGD (Nesterov) momentum
                "weight_decay": 5e-4,  # L2 coefficient, added to the gradient
                "label_smoothing": 0.1,  # share of each target spread over all classes
                "crop_padding": 4,  # pixels of shift for the random crop
                "flip": True,  # random horizontal flip
                "schedule_per": "step",  # the schedule moves after every batch
                "warmup_fraction": 0.03,  # share of the run ramping lr up from 0 (about 1 epoch)
                "log_every": 50,  # steps between loss lines
            },
            description="ResNet-18, batch 256, Nesterov SGD, cosine, crop+flip, label smoothing, 30 epochs",
        )
    )
