"""Where cifar-bench keeps what it caches: decoded datasets and this machine's CPU-tuning decisions.

Deleting the folder is always safe: the data is decoded again and the CPU
settings are measured again on the next run.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Overrides the cache folder (tests give each session its own).
CACHE_ENV = "CIFAR_BENCH_CACHE"


def default_cache_dir() -> Path:
    """``$CIFAR_BENCH_CACHE``, else ``$XDG_CACHE_HOME/cifar-bench``, else ``~/.cache/cifar-bench``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifar-bench"
