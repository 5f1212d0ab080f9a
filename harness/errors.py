"""Errors the CLI turns into one-line messages instead of tracebacks."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable


class UsageError(Exception):
    """Bad input from the user: unknown name, bad flag, missing data. Exit code 2."""

    exit_code = 2


class DataError(UsageError):
    """Data missing or unreadable; the message says how to get it."""


class PluginError(UsageError):
    """A plugin is broken; the message names the plugin and what is wrong."""


class RunFailed(Exception):
    """A run started but could not finish. Exit code 1."""

    exit_code = 1


class ObserverError(Exception):
    """A plugin's lifecycle hook raised: the run is recorded as failed, naming the plugin and the hook."""

    def __init__(self, plugin: str, hook: str, cause: BaseException) -> None:
        super().__init__(
            f"plugin {plugin!r} failed in {hook}: {type(cause).__name__}: {first_line(cause)} "
            f"(disable it with -p no:{plugin})"
        )
        self.plugin, self.hook, self.cause = plugin, hook, cause


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line(exc: BaseException) -> str:
    """One of our own errors' whole message on one line (a name the user typed may hold a newline).

    Other exceptions get :func:`first_line`: a library's message can run to
    a stack of C++ frames, whose first line is the one that says what failed.
    """
    return " ".join(str(exc).split()) or type(exc).__name__


def warn(message: str, kind: str = "warning") -> None:
    """One line on stderr, in the CLI's style: ``cifar-bench: warning: ...``."""
    print(f"cifar-bench: {kind}: {message}", file=sys.stderr)


def unknown_name(kind: str, name: str, known: Iterable[str], hint: str = "") -> UsageError:
    """An error for a name that is not registered, suggesting the closest ones."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if close:
        suggestion = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    else:
        suggestion = "known: " + (", ".join(known) if known else "none")
    tail = f" ({hint})" if hint else ""
    return UsageError(f"unknown {kind} {name!r}: {suggestion}{tail}")
