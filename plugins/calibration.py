"""The ``calibration`` evaluation: how far the trained model's confidence is from its accuracy, on the clean test split.

Three numbers, from the softmax of the model's logits over the run's test images (computed in float64):

* **ECE**, expected calibration error, with **15 equal-width confidence bins** (the common choice since Guo
  et al., 2017): images are binned by their top-class probability (bin ``b`` holds confidences in
  ``((b-1)/15, b/15]``), and ECE is the sum over bins of ``|accuracy - mean confidence|`` weighted by the
  bin's share of the images. A fraction, 0 for a perfectly calibrated model.
* **NLL**, the mean negative log-likelihood of the true class, in nats (the cross-entropy loss on the test
  split).
* **Brier score**, the mean over images of the squared distance between the probability vector and the
  one-hot true class, summed over the classes (0 to 2; not divided by the class count).

The record also keeps each bin (bounds, images, mean confidence, accuracy): ``cifar-bench plot`` draws them
as a reliability diagram.
"""

from __future__ import annotations

from typing import Any

import torch

from cifar_bench import Evaluation, EvaluationInput, EvaluationOutput, hookimpl

BINS = 15  # equal-width confidence bins of the expected calibration error


def calibration(logits: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> tuple[dict[str, float], list]:
    """``({"ece", "nll", "brier"}, bins)`` of logits ``(N, K)`` against labels ``(N,)``; see the module docs.

    Each bin is ``{"lower", "upper", "images", "confidence", "accuracy"}`` (the last two None when empty).
    """
    log_p = torch.log_softmax(logits.double(), dim=1)
    p = log_p.exp()
    confidence, predicted = p.max(dim=1)
    correct = (predicted == labels).double()
    n = len(labels)
    nll = -log_p[torch.arange(n), labels].mean().item()
    one_hot = torch.nn.functional.one_hot(labels, p.shape[1]).double()
    brier = ((p - one_hot) ** 2).sum(dim=1).mean().item()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    which = torch.bucketize(confidence, edges[1:-1])  # bin b holds (edges[b], edges[b + 1]]
    table, ece = [], 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        conf = confidence[members].mean().item() if count else None
        acc = correct[members].mean().item() if count else None
        if count:
            ece += abs(acc - conf) * count / n
        table.append({"lower": edges[b].item(), "upper": edges[b + 1].item(), "images": count,
                      "confidence": conf, "accuracy": acc})  # fmt: skip
    return {"ece": ece, "nll": nll, "brier": brier}, table


def evaluate(data: EvaluationInput) -> EvaluationOutput:
    """The calibration of the run's model on its (clean) test images."""
    if len(data.labels) == 0:
        raise ValueError("the run has no test images to measure calibration on")
    metrics, bins = calibration(data.logits(data.images), data.labels)
    definitions = {"ece": f"{BINS} equal-width confidence bins, weighted by images",
                   "nll": "mean -log p(true class), nats",
                   "brier": "mean over images of sum over classes (p - one-hot)^2"}  # fmt: skip
    details: dict[str, Any] = {"images": len(data.labels), "bins": bins, "definitions": definitions}
    return EvaluationOutput(metrics=metrics, details=details)


def factory(hyperparameters) -> Evaluation:
    return Evaluation(evaluate, settings={"bins": BINS, "binning": "equal-width", "split": "test"})


@hookimpl
def register_evaluations(register):
    register("calibration", factory, f"ECE ({BINS} equal-width bins), NLL and Brier score on the clean test split")
