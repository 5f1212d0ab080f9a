"""cifar-bench: a pluggy harness for timing and comparing CIFAR-10 training recipes.

This module is the public API, for plugins and for scripts and notebooks; anything not exported here may
change without notice. The package is in layers, each importing only the ones below it (checked by
import-linter, see pyproject.toml):

- ``commands``: the ``cifar-bench`` command line (``cli``), one module per command, each its arguments plus
  one library call; ``console`` (terminal output), ``api`` (``run``, ``runs``, ``load_runs``, ``compare``)
  and ``pytest_plugin`` (fixtures for plugin authors) just under it.
- ``execution``: a plan of runs (``plan``) and its backends: in this process (``inprocess``, with
  ``lockstep`` for a reference run), data-parallel ranks (``torchrun``), a suite's (``suite``, ``local``),
  a Ray cluster (``ray_cluster``, ``ray_worker``), two installs taking turns (``ab``, ``ab_side``); a command's
  experiment trackers (``tracking``: ``--track``); a run started under valgrind to count its instructions
  (``valgrind``).
- ``training``: one run, from its ``config`` to its record: ``session`` (start, run, finish), ``setup``,
  ``step``, ``loop``, ``state`` (the record builder), ``data``, ``batches``, ``devices``, ``variants``,
  ``tuning`` (CPU), ``cuda_graphs``, ``meters``, ``energy``, ``timing``, ``world``, ``environment``;
  counting instructions inside a run (``callgrind``, ``instructions``: ``run --measure instructions``).
- ``results``: the record's ``schema`` (``typed`` derives checks from it), ``store`` (files), ``workload``,
  ``variant``, ``reader`` (records into a DataFrame), ``stats``, ``report``, ``compare``, ``plot``, ``publish``,
  ``series`` (which runs form one history), ``changepoints`` (with ``edivisive``, ``tdist``), ``regressions``;
  accuracy across seeds in ``accuracy_stats`` (with ``student_t``), ``report_accuracy``, ``compare_accuracy``
  (and ``compare_accuracy_render``), and ``time_power`` (the slowdown the time gate can detect); the gate
  on instruction counts in ``compare_instructions``.
- ``hooks``: the plugin system: ``specs`` (the hooks), ``manager`` (loading plugins), ``registry``,
  ``components`` (what plugins register, and the table of component kinds), ``events``, ``commands``.
- under everything: ``errors``, ``signals``, ``cache``, ``files``, ``version``, ``machine``.

Evaluations after training (``run --evaluate``) cross the layers: their public types in ``hooks.evaluations``,
running them in ``training.evaluations`` (their arrays kept by ``training.array_cache``), reading them back in
``results.evaluations``, ``results.plot_evaluations`` and ``results.publish.evaluations``.
"""

from importlib import import_module

from .errors import DataError, PluginError, UsageError
from .hooks.commands import Command
from .hooks.components import Dataset, DataSource, Recipe, Transform
from .hooks.evaluations import Evaluation, EvaluationInput, EvaluationOutput
from .hooks.events import EpochResult, RunInfo, TrainProgress
from .hooks.specs import hookimpl
from .results.schema import RunRecord
from .version import __version__

# Exported, but imported on first use: they need torch, torchvision or pandas, and importing cifar_bench
# (which every command, and the pytest plugin in every test session, does) must not load those.
_LAZY = {
    "fingerprint_arrays": "training.data",
    "read_image_folder": "training.data",
    "run": "api",
    "runs": "api",
    "load_runs": "api",
    "compare": "api",
    "RunOptions": "api",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value  # found directly from now on
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    """Run the ``cifar-bench`` command in this process; returns its exit code (for plugin tests)."""
    from .commands.cli import main as cli_main

    return cli_main(argv)


__all__ = [
    "Command",
    "DataError",
    "DataSource",
    "Dataset",
    "EpochResult",
    "Evaluation",
    "EvaluationInput",
    "EvaluationOutput",
    "PluginError",
    "Recipe",
    "RunInfo",
    "RunOptions",
    "RunRecord",
    "TrainProgress",
    "Transform",
    "UsageError",
    "__version__",
    "compare",
    "fingerprint_arrays",
    "hookimpl",
    "load_runs",
    "main",
    "read_image_folder",
    "run",
    "runs",
]
