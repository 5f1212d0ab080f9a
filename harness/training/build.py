"""Calling a component's factory: one call, one check and one message for every kind of component."""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import Any

from ..errors import PluginError, UsageError
from ..hooks.components import KINDS
from ..hooks.registry import Entry


def build(entry: Entry, *args: Any) -> Any:
    """Call a component factory with ``args`` and check that it built what its kind builds.

    A factory that raises (other than with a UsageError of its own), or that
    returns the wrong type, is its plugin's error: one line naming the plugin,
    the kind and the name, exit code 2.
    """
    try:
        built = entry.factory(*args)
    except (UsageError, PluginError):
        raise
    except Exception as exc:
        raise PluginError(
            f"plugin {entry.plugin!r}: {entry.kind} {entry.name!r} factory failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(built, built_type(entry.kind)):
        raise PluginError(
            f"plugin {entry.plugin!r}: {entry.kind} {entry.name!r} returned "
            f"{type(built).__name__}, expected {KINDS[entry.kind].builds}"
        )
    return built


@cache
def built_type(kind: str) -> type:
    """The class a factory of ``kind`` must return, from the kinds table's dotted path (imported here, late)."""
    module, _, name = KINDS[kind].builds.rpartition(".")
    return getattr(import_module(module), name)
