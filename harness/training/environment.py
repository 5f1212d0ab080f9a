"""The hardware and software a result came from, stored with every record."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
import time

import torch
import torchvision

from ..machine import cpu_model
from ..results.schema import Environment


@functools.cache
def git_commit() -> str | None:
    """The commit of the working directory, with ``+dirty`` when it has changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "") if commit else None


def collect(device_name: str) -> Environment:
    return Environment(
        python=sys.version.split()[0],
        torch=torch.__version__,
        torchvision=torchvision.__version__,
        platform=platform.platform(),
        cpu=cpu_model(),
        threads=torch.get_num_threads(),
        device_name=device_name,
        git_commit=git_commit(),
        hostname=socket.gethostname(),
    )


def process_age_s() -> float | None:
    """Seconds since this process started (Linux: /proc), or None where the system does not say."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()  # after the command name, which may hold spaces
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime, in ticks since boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return None
