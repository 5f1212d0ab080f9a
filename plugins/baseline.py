"""The PyTorch tutorial "Training a Classifier", exactly, as the ``baseline`` recipe.

Every value here is the tutorial's: ``ToTensor()`` then
``Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))``, the two-conv ``Net``,
``CrossEntropyLoss``, ``SGD(lr=0.001, momentum=0.9)``, batch size 4, two
epochs over the shuffled training set, and a loss line every 2000
mini-batches. Change none of them: this recipe is the yardstick.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision import transforms

from cifar_bench import Recipe, Transform, hookimpl


class Net(nn.Module):
    """conv(3->6, 5) > pool > conv(6->16, 5) > pool > fc 400->120->84->10, ReLU between."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)  # logits: CrossEntropyLoss applies the softmax


def tutorial_transform(hyperparameters) -> Transform:
    # ToTensor() is the harness's uint8 -> [0, 1] step; Normalize maps to [-1, 1].
    return Transform(normalize=transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))


def net(hyperparameters) -> nn.Module:
    return Net(num_classes=hyperparameters.get("num_classes", 10))


def cross_entropy(hyperparameters) -> nn.Module:
    return nn.CrossEntropyLoss()


def sgd(parameters, hyperparameters) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        parameters,
        lr=hyperparameters["lr"],
        momentum=hyperparameters.get("momentum", 0.0),
        weight_decay=hyperparameters.get("weight_decay", 0.0),
        nesterov=hyperparameters.get("nesterov", False),
    )


@hookimpl
def register_transforms(register):
    register("tutorial", tutorial_transform, "ToTensor + Normalize(0.5, 0.5), as in the tutorial")


@hookimpl
def register_models(register):
    register("net", net, "the tutorial's two-conv Net (62,006 parameters)")


@hookimpl
def register_losses(register):
    register("cross_entropy", cross_entropy, "torch.nn.CrossEntropyLoss")


@hookimpl
def register_optimizers(register):
    register("sgd", sgd, "torch.optim.SGD with lr, momentum, weight_decay, nesterov")


@hookimpl
def register_recipes(register):
    register(
        Recipe(
            name="baseline",
            dataset="cifar10",
            transform="tutorial",
            model="net",
            loss="cross_entropy",
            optimizer="sgd",
            hyperparameters={
                "batch_size": 4,  # images per step
                "epochs": 2,  # passes over the 50,000 training images
                "lr": 0.001,  # SGD learning rate
                "momentum": 0.9,  # SGD momentum
                "log_every": 2000,  # steps between loss lines, as the tutorial prints
            },
            description="PyTorch's 'Training a Classifier' tutorial, unchanged",
        )
    )
