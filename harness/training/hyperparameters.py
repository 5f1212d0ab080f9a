"""A run's hyperparameters: resolved from the recipe and the user's overrides, checked, and watched.

Everything about them that can be known before a run starts is checked here (:func:`check`), so that bad
input stops a command before anything trains: ``Session.run`` calls it first, and ``run --nproc`` (before
starting torchrun) and ``suite`` (before its first run) call it too.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import UsageError
from ..hooks.components import Recipe
from ..results.variant import problem as variant_problem
from .config import DEFAULT_HYPERPARAMETERS, HARNESS_KEYS, RunConfig
from .world import World


class WatchedHyperparameters(Mapping):
    """The hyperparameters as factories see them, noting every key a factory looks up.

    This is how the harness knows which keys a run's components read, so
    that a ``--set`` key nobody reads (a typo) is refused before training.
    Factories read what they need when they are called, as every built-in
    one does; a key read only later (inside a training step) is not seen.
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values, self.read = values, set(HARNESS_KEYS)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)  # Mapping.get and `in` come through here too
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def check_overrides_read(overrides: Mapping[str, Any], hp: WatchedHyperparameters, recipe: Recipe) -> None:
    """Refuse a hyperparameter the user set that no component of the run read: it would change nothing."""
    unread = sorted(set(overrides) - hp.read)
    if not unread:
        return
    known = sorted(hp.read | set(recipe.hyperparameters) - set(unread))
    name = unread[0]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"the run reads {', '.join(known)}"
    raise UsageError(f"hyperparameter {name!r} is read by no component of recipe {recipe.name!r}: {hint}")


def check(config: RunConfig, recipe: Recipe) -> dict[str, Any]:
    """Everything about a run that can be known before it starts; returns its resolved hyperparameters."""
    hp = resolve(recipe, config.hyperparameters)
    problem = variant_problem(config.variant)
    if problem:
        raise UsageError(problem)
    if config.target_acc is not None and not 0 < config.target_acc <= 1:
        raise UsageError(f"--target-acc is a fraction of the test set, 0..1; got {config.target_acc}")
    World(size=config.processes).per_rank_batch(hp["batch_size"])  # a global batch the ranks share evenly
    return hp


def resolve(recipe: Recipe, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe's hyperparameters over the defaults, the user's overrides over both; each checked."""
    hp = {**DEFAULT_HYPERPARAMETERS, **recipe.hyperparameters, **overrides}
    for key, value in hp.items():
        if not _finite(value):
            raise UsageError(f"hyperparameter {key} must be a finite value, got {value!r}")
    for key in ("batch_size", "epochs", "eval_batch_size", "log_every"):
        value = hp.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UsageError(f"{key} must be a whole number of at least 1, got {value!r}")
    lr = hp.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 or not math.isfinite(lr):
        raise UsageError(f"lr must be a positive number, got {lr!r}")
    return hp


def _finite(value: Any) -> bool:
    """False for NaN or an infinity anywhere in a value (a JSON record cannot hold them)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return True
