"""Hook specifications: everything a plugin can provide to or observe of cifar-bench.

Two families:

* **Component hooks** (``register_*``) are called once, when the registry is
  built. Each receives a ``register`` callback; a plugin calls it once per
  component it provides. Names are unique per kind: two plugins registering
  the same name is an error that names both.
* **Command hook** (``register_commands``) is called once, when the
  command line is built: built-in commands are registered through it like
  any plugin's, so a plugin can add a subcommand of its own.
* **Tracker hook** (``register_trackers``) is a component hook too: what it
  registers makes observers on demand (``--track NAME``), one per command.
* **Lifecycle hooks** (``run_start``, ``train_progress``, ``epoch_end``,
  ``run_end``) are called by the training loop at its edges, for observers
  (progress bars, loggers, result writers). They return nothing and must not
  change the run; every implementation is called (none is firstresult).

Implement a hook with :data:`cifar_bench.hookimpl` in a module or class, and
register it by entry point (group ``cifar_bench``) or ``-p``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ..results.schema import RunRecord  # annotations only: the record is the results layer's
    from .commands import Command
    from .components import (
        DatasetFactory,
        EvaluationFactory,
        LossFactory,
        ModelFactory,
        OptimizerFactory,
        Recipe,
        SchedulerFactory,
        TrackerFactory,
        TransformFactory,
    )
    from .events import EpochResult, RunInfo, TrainProgress

PROJECT_NAME = "cifar_bench"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -- components ---------------------------------------------------------------


@hookspec
def register_datasets(register: Callable[[str, DatasetFactory, str], None]) -> None:
    """Register datasets.

    :param register: call as ``register(name, factory, description="")``.
        ``factory(source: DataSource) -> Dataset`` loads both splits from
        ``source`` (honouring ``source.data_dir`` and ``source.download``)
        and raises :class:`cifar_bench.DataError` with a fix-it message when
        the data is missing or unreadable.
    :return: nothing. Not firstresult: every plugin's datasets are registered.
    """


@hookspec
def register_transforms(register: Callable[[str, TransformFactory, str], None]) -> None:
    """Register input pipelines.

    :param register: call as ``register(name, factory, description="")``.
        ``factory(hyperparameters) -> Transform``.
    :return: nothing. Not firstresult.
    """


@hookspec
def register_models(register: Callable[[str, ModelFactory, str], None]) -> None:
    """Register models.

    :param register: call as ``register(name, factory, description="")``.
        ``factory(hyperparameters) -> torch.nn.Module``, built on the CPU
        with fresh weights; the harness moves it to the run's device.
    :return: nothing. Not firstresult.
    """


@hookspec
def register_losses(register: Callable[[str, LossFactory, str], None]) -> None:
    """Register loss functions.

    :param register: call as ``register(name, factory, description="")``.
        ``factory(hyperparameters) -> torch.nn.Module`` mapping
        ``(logits, labels)`` to a scalar loss.
    :return: nothing. Not firstresult.
    """


@hookspec
def register_optimizers(register: Callable[[str, OptimizerFactory, str], None]) -> None:
    """Register optimizers.

    :param register: call as ``register(name, factory, description="")``.
        ``factory(parameters, hyperparameters) -> torch.optim.Optimizer``;
        read ``lr`` and whatever else it needs from the hyperparameters.
    :return: nothing. Not firstresult.
    """


@hookspec
def register_schedulers(register: Callable[[str, SchedulerFactory, str], None]) -> None:
    """Register learning-rate schedules.

    :param register: call as ``register(name, factory, description="")``.
        ``factory(optimizer, hyperparameters, steps_per_epoch) ->
        torch.optim.lr_scheduler.LRScheduler``. The harness calls
        ``scheduler.step()`` after every batch when the recipe's
        ``schedule_per`` hyperparameter is ``"step"``, else after every epoch.
    :return: nothing. Not firstresult.
    """


@hookspec
def register_recipes(register: Callable[[Recipe], None]) -> None:
    """Register recipes.

    :param register: call as ``register(recipe)`` with a :class:`Recipe`
        naming a component of each kind (from any plugin) and its
        hyperparameters; ``recipe.name`` is what ``cifar-bench run`` takes.
    :return: nothing. Not firstresult.
    """


@hookspec
def register_evaluations(register: Callable[[str, EvaluationFactory, str], None]) -> None:
    """Register evaluations: measurements of the trained model, made after the run's final evaluation.

    :param register: call as ``register(name, factory, description="")``.
        ``factory(hyperparameters) -> cifar_bench.Evaluation``, called in the
        setup phase (before training: raise :class:`cifar_bench.UsageError`
        for a bad setting). Its ``evaluate(data: EvaluationInput)`` gets the
        trained model, the device and the run's test data, and returns an
        :class:`cifar_bench.EvaluationOutput` (or a mapping of metric name to
        number). A run chooses evaluations by name (``run --evaluate
        NAME,...``, a suite's ``evaluate``, a recipe's ``evaluations``); each
        is timed as its own phase and stored in the record under its name.
    :return: nothing. Not firstresult: every plugin's evaluations are registered.
    """


# -- commands -------------------------------------------------------------------


@hookspec
def register_commands(register: Callable[[Command], None]) -> None:
    """Register subcommands of ``cifar-bench``.

    :param register: call as ``register(command)`` with a :class:`cifar_bench.Command`:
        its ``name`` (what follows ``cifar-bench``), a one-line ``help``, an
        ``add_arguments(parser)`` that adds its flags to an ``argparse``
        parser, and a ``run(args) -> int`` returning the exit code. Keep the
        module light to import (import heavy libraries inside ``run``): every
        command, ``--version`` included, builds the command line.
    :return: nothing. Not firstresult: every plugin's commands are registered;
        two commands of one name are an error that names both plugins.
    """


# -- experiment trackers ----------------------------------------------------------


@hookspec
def register_trackers(register: Callable[[str, TrackerFactory, str], None]) -> None:
    """Register experiment trackers, which ``--track NAME[=ARGUMENT]`` puts on a command's runs.

    :param register: call as ``register(name, factory, description="")``.
        ``factory(argument: str | None) -> tracker`` is called once per command
        that asks for ``name`` (``argument``: what follows ``=``, else None),
        in the process that finishes the records, before the first run. The
        tracker is an object with any of the lifecycle hooks as methods
        (``run_start(run)``, ``train_progress(run, progress)``,
        ``epoch_end(run, epoch)``, ``run_end(run, record)``), and optionally
        ``close()``, called once after the command's last run, and
        ``problem``, a string saying what stopped it. A tracker's error never
        fails a run: it is said once on stderr, the tracker is told nothing
        more, and the runs and their records go on as without it. Import the
        tracker's own library in the factory, not at the plugin's import.
        Raise :class:`cifar_bench.UsageError` for a bad ``argument`` (exit
        code 2, before anything trains).
    :return: nothing. Not firstresult: every plugin's trackers are registered.
    """


# -- run lifecycle --------------------------------------------------------------


@hookspec
def run_start(run: RunInfo) -> None:
    """Called once per run after setup, just before the first training step.

    :param run: the run's recipe, device, resolved hyperparameters and sizes.
    :return: nothing. Not firstresult: every observer is told.
    """


@hookspec
def train_progress(run: RunInfo, progress: TrainProgress) -> None:
    """Called every few dozen training steps and at each ``log_every`` step.

    Called from inside the timed training phase: keep it cheap.

    :param run: the run, as passed to :func:`run_start`.
    :param progress: epoch, step, images/s and running loss.
    :return: nothing. Not firstresult.
    """


@hookspec
def epoch_end(run: RunInfo, epoch: EpochResult) -> None:
    """Called after each training epoch (outside the timed training phase).

    :param run: the run, as passed to :func:`run_start`.
    :param epoch: the epoch number, its mean loss and its training seconds.
    :return: nothing. Not firstresult.
    """


@hookspec
def run_end(run: RunInfo, record: RunRecord) -> None:
    """Called once per run with its finished record, whatever its status.

    The record is complete here (metrics, timings, environment); observers
    may store or print it but must not change it.

    :param run: the run, as passed to :func:`run_start`.
    :param record: the :class:`RunRecord` that will be written.
    :return: nothing. Not firstresult.
    """
