"""SIGTERM handled like Ctrl-C, so that a run stopped by CI, Kubernetes or Slurm is still recorded.

Those send SIGTERM first (and SIGKILL some seconds later). Python's default
for SIGTERM is to die on the spot, losing the run that was under way; with
:func:`sigterm_as_interrupt` it raises :class:`Terminated`, a
``KeyboardInterrupt``, so every place that records an interrupted run for
Ctrl-C records this one too. The command then exits 143 (128 + SIGTERM), as
a process killed by SIGTERM does, instead of Ctrl-C's 130.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

#: Exit codes of a command stopped by Ctrl-C (SIGINT) and by SIGTERM: 128 + the signal's number.
INTERRUPTED = 130
TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process gets SIGTERM."""


_received = threading.Event()


def terminated() -> bool:
    """Whether SIGTERM came while :func:`sigterm_as_interrupt` was in force."""
    return _received.is_set()


def _raise_terminated(signum, frame) -> None:
    _received.set()
    raise Terminated("terminated (SIGTERM)")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within this block, SIGTERM raises :class:`Terminated`; the old handler is put back after.

    Only the main thread can set signal handlers: elsewhere (a command run
    from a worker thread) this does nothing.
    """
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_code(code: int) -> int:
    """``code``, with an interrupted command's 130 turned into 143 when SIGTERM was the cause."""
    return TERMINATED if code == INTERRUPTED and terminated() else code
