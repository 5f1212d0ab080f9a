"""A run's evaluations (``run --evaluate NAME,...``): named when the run starts, built in setup, run after the
final evaluation, each timed as its own phase and stored in the record under its name.

Which evaluations a run makes: the run's own list when it gives one (``--evaluate``, a suite's ``evaluate``,
``RunOptions.evaluate``; ``none`` for none), else its recipe's ``evaluations``. Unknown names stop the run
before anything is read (exit 2, with the closest names). Each factory is called in the setup phase with the
run's watched hyperparameters (so ``--set corruption_images=all`` counts as read, and a bad value stops the
run before training). After the final evaluation, each ``evaluate`` runs in a phase of its own,
``evaluation:NAME``: its seconds are in the record (``evaluations[NAME].seconds``, and all of them in
``timings.evaluation_s``), never in ``train_s`` or ``eval_s``. An evaluation that raises, or returns
something that is no result, fails the run: the record is still written, with what was measured before,
``status: failed`` and an error naming the plugin and the evaluation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ObserverError, PluginError, UsageError, first_line
from ..hooks.components import Recipe
from ..hooks.evaluations import Evaluation, EvaluationInput, EvaluationOutput, evaluation_names
from ..hooks.registry import Entry, Registry
from ..results.schema import EvaluationResult
from .array_cache import FolderArrayCache
from .batches import normalize_batch
from .build import build
from .config import RunConfig
from .state import EVALUATION_PHASE
from .timing import PhaseTimer
from .variants import autocast

if TYPE_CHECKING:  # annotations only: setup.py builds a run's evaluations with this module's build_all
    from .setup import Parts
    from .state import RunState


class EvaluationFailed(ObserverError):
    """An evaluation raised or returned no result: the run is recorded as failed, naming the plugin and it."""

    def __init__(self, entry: Entry, problem: str, cause: BaseException | None = None) -> None:
        Exception.__init__(self, f"plugin {entry.plugin!r}: evaluation {entry.name!r} {problem}")
        self.plugin, self.hook, self.cause = entry.plugin, f"evaluation {entry.name}", cause


@dataclass(frozen=True)
class Prepared:
    """One evaluation of a run, built: its registry entry and what its factory returned."""

    entry: Entry
    evaluation: Evaluation


def entries(registry: Registry, recipe: Recipe, config: RunConfig) -> list[Entry]:
    """The registry entries of the evaluations a run makes (its own list, else its recipe's), in order."""
    names = config.evaluations
    if names is None:
        names = evaluation_names(recipe.evaluations, f"recipe {recipe.name!r} evaluations") or ()
    if names and config.processes > 1:
        raise UsageError("evaluations run in one process: drop --nproc, or run them with --evaluate none")
    return [registry.get("evaluation", name) for name in names]


def build_all(
    found: list[Entry], hyperparameters: Mapping[str, Any]
) -> tuple[list[Prepared], dict[str, EvaluationResult]]:
    """Each evaluation built from its factory (in the setup phase), and its record entry with the settings."""
    prepared, results = [], {}
    for entry in found:
        evaluation = build(entry, hyperparameters)
        try:
            settings = _json(evaluation.settings, "settings")
        except ValueError as exc:
            raise PluginError(f"plugin {entry.plugin!r}: evaluation {entry.name!r} {exc}") from None
        prepared.append(Prepared(entry, evaluation))
        results[entry.name] = EvaluationResult(plugin=entry.plugin, settings=settings)
    return prepared, results


def after_training(run: RunState, parts: Parts) -> None:
    """The run's evaluations, after its final evaluation, on its trained model and its test split."""
    if not parts.evaluations:
        return
    data, indices = run.data, run.data.test_indices
    everything = len(indices) == len(data.test) and torch.equal(indices, torch.arange(len(data.test)))
    images = data.test.images if everything else data.test.images[indices]  # no copy of a whole split
    accuracy = (run.correct.sum() / run.total.sum().clamp(min=1)).item() if run.correct is not None else None
    given = make_input(model=parts.step.model, device=run.device, images=images, labels=data.test.labels[indices],
                       indices=indices, normalize=parts.normalize, dataset=data.dataset, config=run.config,
                       hp=run.hp, test_accuracy=accuracy)  # fmt: skip
    run_all(parts.evaluations, given, run.evaluations, run.timer)


def run_all(prepared: list[Prepared], data: EvaluationInput, results: dict[str, EvaluationResult],
            timer: PhaseTimer) -> None:  # fmt: skip
    """Each evaluation in its own phase, its results into ``results`` as soon as it is done."""
    for item in prepared:
        entry, phase = item.entry, EVALUATION_PHASE + item.entry.name
        data.model.eval()  # whatever the evaluation before did with it
        try:
            with timer.phase(phase):
                output = item.evaluation.evaluate(data)
        except (KeyboardInterrupt, ObserverError):
            raise
        except Exception as exc:
            raise EvaluationFailed(entry, f"failed: {type(exc).__name__}: {first_line(exc)}", exc) from exc
        finally:
            results[entry.name].seconds = timer.seconds.get(phase, 0.0)
        _store(entry, output, results[entry.name])


def make_input(*, model: torch.nn.Module, device: torch.device, images: torch.Tensor, labels: torch.Tensor,
               indices: torch.Tensor, normalize: Callable, dataset, config: RunConfig, hp: Mapping[str, Any],
               test_accuracy: float | None) -> EvaluationInput:  # fmt: skip
    """What every evaluation of a run is given (see :class:`EvaluationInput`)."""
    return EvaluationInput(
        model=model, device=device, images=images, labels=labels, indices=indices, normalize=normalize,
        logits=logits_function(model, device, normalize, config, hp["eval_batch_size"]), dataset=dataset,
        hyperparameters=MappingProxyType(dict(hp)), seed=config.seed, test_accuracy=test_accuracy,
        cache=FolderArrayCache(config.cache_dir),
    )  # fmt: skip


def logits_function(model: torch.nn.Module, device: torch.device, normalize: Callable, config: RunConfig,
                    batch_size: int) -> Callable[[torch.Tensor], torch.Tensor]:  # fmt: skip
    """uint8 ``(N, C, H, W)`` images -> float32 logits on the CPU, computed as the run's final evaluation is."""
    variant = config.variant
    memory_format = torch.channels_last if variant.channels_last else torch.contiguous_format

    def logits(images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise TypeError("logits() takes uint8 images shaped (N, C, H, W) in a torch tensor")
        outputs = []
        cast = autocast(variant, device) if variant.precision != "fp32" else nullcontext()
        with torch.inference_mode(), cast:
            for chunk in images.split(batch_size):
                # uint8 made contiguous before normalizing: a quarter of the bytes a float copy would move
                x = normalize_batch(chunk.to(device).contiguous(), normalize, memory_format)
                outputs.append(model(x).float().cpu())
        return torch.cat(outputs) if outputs else torch.empty(0, 0)

    return logits


# -- what an evaluation returned ---------------------------------------------------------------------------


def _store(entry: Entry, output: Any, result: EvaluationResult) -> None:
    """An evaluation's output checked and kept in its record entry; no result at all fails the run."""
    if isinstance(output, Mapping):
        output = EvaluationOutput(metrics=output)
    if not isinstance(output, EvaluationOutput):
        raise EvaluationFailed(entry, f"returned {type(output).__name__}, expected cifar_bench.EvaluationOutput "
                                      "or a mapping of metric name to number")  # fmt: skip
    try:
        result.metrics = {_name(k, "metric"): _number(v, f"metric {k!r}") for k, v in output.metrics.items()}
        result.tables = {
            _name(table, "table"): {
                str(row): {str(col): _number(v, f"table {table!r} [{row!r}][{col!r}]") for col, v in cells.items()}
                for row, cells in rows.items()
            }
            for table, rows in output.tables.items()
        }
        result.details = _json(output.details, "details")
    except (ValueError, AttributeError) as exc:
        raise EvaluationFailed(entry, f"returned a bad result: {exc}") from None


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"a {what} name must be a non-empty string, got {value!r}")
    return value


def _number(value: Any, what: str) -> float | None:
    """A finite number as float, or None; a bool, a string, NaN or an infinity is no measurement."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (int, float)):  # a numpy or torch scalar
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number or None, got {value!r}")
    return float(value)


def _json(value: Any, what: str) -> dict[str, Any]:
    """A mapping as plain JSON values (numpy scalars become numbers); refuses what a record cannot hold."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a mapping, got {type(value).__name__}")

    def scalar(item: Any) -> Any:
        if hasattr(item, "item"):
            return item.item()
        raise TypeError(f"{type(item).__name__} is not a JSON value")

    try:
        return json.loads(json.dumps(dict(value), allow_nan=False, default=scalar))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must hold JSON values (finite numbers, strings, lists, mappings): {exc}") from None
