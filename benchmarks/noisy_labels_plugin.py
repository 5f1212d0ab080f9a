"""A planted accuracy loss for testing the accuracy gate: the tutorial's loss, trained on partly wrong labels.

Load it with ``-p benchmarks/noisy_labels_plugin.py`` and pick its loss with
``--loss cross_entropy_planted``. It is ``torch.nn.CrossEntropyLoss``, except
that when ``CIFAR_BENCH_PLANTED_LABEL_NOISE`` is set to a fraction ``f``
(default 0: plants nothing), each training label is replaced, with
probability ``f``, by a class drawn uniformly (which may be the right one,
so ``0.9 f`` of labels end up wrong on average). Training sees noisier
targets, and the model ends a little less accurate; nothing else changes.

The fraction comes from the environment, not a hyperparameter, so that a
planted run and a plain one are the same work to ``compare`` (the record
names the loss ``cross_entropy_planted`` either way and no hyperparameter
differs), as two commits of the same recipe would be: this is how
``slow_plugin.py`` plants a slowdown. The loss is used only in training
(evaluation computes no loss), so the test labels are never touched.

The draws come from the loss's own generator, seeded from the run's seed
(``torch.initial_seed()`` when the first batch arrives), so they leave the
run's other random streams (weights, batch order) exactly as in a plain run
of the same seed, and a planted run is as reproducible as a plain one.
"""

from __future__ import annotations

import os

import torch

from cifar_bench import hookimpl

#: The environment variable holding the fraction of training labels to redraw (0 to 1).
PLANT_ENV = "CIFAR_BENCH_PLANTED_LABEL_NOISE"


class PlantedLabelNoiseLoss(torch.nn.Module):
    """Cross-entropy on labels of which a fraction ``noise`` is redrawn uniformly over the classes."""

    def __init__(self, noise: float) -> None:
        super().__init__()
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"{PLANT_ENV} must be a fraction between 0 and 1, got {noise}")
        self.noise = noise
        self.generator: torch.Generator | None = None

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.noise > 0:
            labels = self._redraw(labels, logits.shape[-1])
        return torch.nn.functional.cross_entropy(logits, labels)

    def _redraw(self, labels: torch.Tensor, classes: int) -> torch.Tensor:
        if self.generator is None:  # seeded once, from the run's seed, independent of its other random streams
            self.generator = torch.Generator().manual_seed(torch.initial_seed())
        redraw = torch.rand(labels.shape, generator=self.generator) < self.noise
        drawn = torch.randint(0, classes, labels.shape, generator=self.generator)
        return torch.where(redraw.to(labels.device), drawn.to(labels.device), labels)


def planted_loss(hyperparameters) -> PlantedLabelNoiseLoss:
    return PlantedLabelNoiseLoss(float(os.environ.get(PLANT_ENV, "0") or 0))


@hookimpl
def register_losses(register):
    register(
        "cross_entropy_planted",
        planted_loss,
        f"CrossEntropyLoss; with ${PLANT_ENV} set, that fraction of training labels redrawn at random",
    )
