"""cifar-bench: a pluggy harness for timing and comparing CIFAR-10 training recipes.

This module is the public API that plugins use; anything not exported here
may change without notice.
"""

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:  # torch takes seconds to import: a Ctrl-C then must not print a traceback of its internals
    from .components import Dataset, DataSource, Recipe, Transform
    from .data import fingerprint_arrays, read_image_folder
    from .errors import DataError, PluginError, UsageError
    from .events import EpochResult, RunInfo, TrainProgress
    from .hookspecs import hookimpl
    from .records import RunRecord
except KeyboardInterrupt:
    if Path(sys.argv[0]).name != "cifar-bench":
        raise  # imported by other code (pytest, a notebook): theirs to handle
    print("cifar-bench: interrupted", file=sys.stderr)
    raise SystemExit(130) from None


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
