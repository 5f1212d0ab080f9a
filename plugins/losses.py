"""Loss functions beyond the tutorial's plain cross-entropy.

Hyperparameters read:

* ``label_smoothing``: the share of each target's probability spread evenly
  over all classes, from 0 (plain one-hot) to below 1.
"""

from __future__ import annotations

import torch.nn as nn

from cifar_bench import UsageError, hookimpl

DEFAULT_LABEL_SMOOTHING = 0.1  # the usual ImageNet/CIFAR value; airbench uses 0.2


def label_smoothing_cross_entropy(hyperparameters) -> nn.Module:
    smoothing = hyperparameters.get("label_smoothing", DEFAULT_LABEL_SMOOTHING)
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0 <= smoothing < 1:
        raise UsageError(f"label_smoothing must be a number from 0 to below 1, got {smoothing!r}")
    return nn.CrossEntropyLoss(label_smoothing=float(smoothing))


@hookimpl
def register_losses(register):
    register(
        "label_smoothing_ce",
        label_smoothing_cross_entropy,
        "cross-entropy with label smoothing (label_smoothing, default 0.1), mean over the batch",
    )
