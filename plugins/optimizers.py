"""Adam, AdamW, and SGD with Nesterov momentum, for any recipe.

(The tutorial's plain ``sgd`` belongs to the ``baseline`` plugin, which
stands alone as the tutorial; recipes of other plugins use these.)

Hyperparameters read:

* ``lr``: the step size.
* ``momentum``, for ``nesterov_sgd`` (default 0.9).
* ``betas``: ``[beta1, beta2]``, the decay rates of the gradient's running
  mean and running square (default ``[0.9, 0.999]``).
* ``weight_decay``: for ``adam``, an L2 term added to the gradient (default
  0); for ``adamw``, decoupled decay, as a fraction of the weight per unit of
  ``lr`` (default 0.01, PyTorch's). The two are not interchangeable: a value
  tuned for SGD is usually far too small for AdamW.
* ``eps``: added to the denominator for stability (default 1e-8).
"""

from __future__ import annotations

import torch

from cifar_bench import UsageError, hookimpl

DEFAULT_BETAS = (0.9, 0.999)
DEFAULT_EPS = 1e-8
DEFAULT_ADAM_WEIGHT_DECAY = 0.0
DEFAULT_ADAMW_WEIGHT_DECAY = 0.01
DEFAULT_MOMENTUM = 0.9  # nesterov_sgd's momentum
DEFAULT_SGD_WEIGHT_DECAY = 0.0  # nesterov_sgd's L2 coefficient, added to the gradient


def _betas(hyperparameters) -> tuple[float, float]:
    betas = hyperparameters.get("betas", DEFAULT_BETAS)
    if (
        not isinstance(betas, (list, tuple))
        or len(betas) != 2
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)
    ):
        raise UsageError(f"betas must be two numbers from 0 to below 1, such as [0.9, 0.999], got {betas!r}")
    return float(betas[0]), float(betas[1])


def adam(parameters, hyperparameters) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        parameters,
        lr=hyperparameters["lr"],
        betas=_betas(hyperparameters),
        eps=hyperparameters.get("eps", DEFAULT_EPS),
        weight_decay=hyperparameters.get("weight_decay", DEFAULT_ADAM_WEIGHT_DECAY),
    )


def adamw(parameters, hyperparameters) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        parameters,
        lr=hyperparameters["lr"],
        betas=_betas(hyperparameters),
        eps=hyperparameters.get("eps", DEFAULT_EPS),
        weight_decay=hyperparameters.get("weight_decay", DEFAULT_ADAMW_WEIGHT_DECAY),
    )


def nesterov_sgd(parameters, hyperparameters) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        parameters,
        lr=hyperparameters["lr"],
        momentum=hyperparameters.get("momentum", DEFAULT_MOMENTUM),
        weight_decay=hyperparameters.get("weight_decay", DEFAULT_SGD_WEIGHT_DECAY),
        nesterov=True,
    )


@hookimpl
def register_optimizers(register):
    register("nesterov_sgd", nesterov_sgd, "torch.optim.SGD, Nesterov momentum (default 0.9), lr, weight_decay")
    register("adam", adam, "torch.optim.Adam with lr, betas, eps, weight_decay (L2, default 0)")
    register("adamw", adamw, "torch.optim.AdamW with lr, betas, eps, weight_decay (decoupled, default 0.01)")
