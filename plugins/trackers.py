"""The built-in experiment trackers, ``--track mlflow[=EXPERIMENT]`` and ``--track tensorboard[=DIR]``.

An ordinary plugin: it registers two tracker factories through the
``register_trackers`` hook, as a third-party tracker would. Importing it costs
nothing: each factory imports its tracker's module when a command asks for
it, and the tracker imports MLflow or TensorBoard when it is made (an extra:
``pip install 'cifar-bench[mlflow]'``, ``'cifar-bench[tensorboard]'``). A
library that is not installed is that tracker's failure, said once: the
runs still train and are recorded.
"""

from __future__ import annotations

from cifar_bench import UsageError, hookimpl


@hookimpl
def register_trackers(register) -> None:
    register("mlflow", mlflow,
             "each run as an MLflow run: params, metrics by step, tags, the record; =EXPERIMENT [the recipe's name]; "
             "MLFLOW_TRACKING_URI, else MLflow's default here; pip install 'cifar-bench[mlflow]'")  # fmt: skip
    register("tensorboard", tensorboard,
             "scalars by step and hparams in DIR/<run_id>; =DIR [runs]; "
             "pip install 'cifar-bench[tensorboard]'")  # fmt: skip


def mlflow(argument: str | None):
    """An :class:`~cifar_bench.plugins.mlflow_tracker.MlflowTracker`; ``argument``: the experiment's name."""
    from .mlflow_tracker import MlflowTracker

    return MlflowTracker(experiment=_non_empty(argument, "mlflow=EXPERIMENT"))


def tensorboard(argument: str | None):
    """A :class:`~cifar_bench.plugins.tensorboard_tracker.TensorboardTracker`; ``argument``: its log folder."""
    from .tensorboard_tracker import TensorboardTracker

    return TensorboardTracker(log_dir=_non_empty(argument, "tensorboard=DIR") or "runs")


def _non_empty(argument: str | None, form: str) -> str | None:
    if argument is not None and not argument.strip():
        raise UsageError(f"--track {form}: give a name after '=', or leave '=' out")
    return argument
