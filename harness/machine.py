"""What machine this is, in words: every figure is stated beside it. Light (no torch), so that benchmarks of
torch-free parts can name the machine too."""

from __future__ import annotations

import functools
import platform


@functools.cache
def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it ("AMD EPYC"), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
