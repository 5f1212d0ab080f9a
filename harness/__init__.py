"""cifar-bench: a pluggy harness for timing and comparing CIFAR-10 training recipes.

This module is the public API that plugins use; anything not exported here
may change without notice. Where things live:

- a run, from RunConfig to its record: ``runner.Session.run``, then ``Session.finish`` (run_end, write)
- command line: ``cli``; many runs (repeats, devices, --reference, lockstep, torchrun): ``orchestration``
- hooks: ``hookspecs``; plugin loading: ``manager``; component resolution: ``registry``
- the record's schema: ``records``; the identity of its work: ``workload``
- reading records (report, compare, plot, publish): ``report.load_runs``
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from .components import Dataset, DataSource, Recipe, Transform
from .errors import DataError, PluginError, UsageError
from .events import EpochResult, RunInfo, TrainProgress
from .hookspecs import hookimpl
from .records import RunRecord

# Exported, but imported on first use: they need torch and torchvision, and importing cifar_bench
# (which every command, and the pytest plugin in every test session, does) must not load those.
_LAZY = {"fingerprint_arrays": "data", "read_image_folder": "data"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value  # found directly from now on
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    """Run the ``cifar-bench`` command in this process; returns its exit code (for plugin tests)."""
    from .cli import main as cli_main

    return cli_main(argv)


try:
    __version__ = version("cifar-bench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "DataError",
    "DataSource",
    "Dataset",
    "EpochResult",
    "PluginError",
    "Recipe",
    "RunInfo",
    "RunRecord",
    "TrainProgress",
    "Transform",
    "UsageError",
    "__version__",
    "fingerprint_arrays",
    "hookimpl",
    "main",
    "read_image_folder",
]
