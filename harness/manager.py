"""The plugin manager: which plugins are loaded, from where, and in what order.

Order of loading (later plugins are called first, as in pluggy):

1. the built-in plugins in :data:`DEFAULT_PLUGINS`, ordinary modules that use
   only the public API;
2. installed plugins from the ``cifar_bench`` entry-point group, unless the
   environment variable ``CIFAR_BENCH_DISABLE_PLUGIN_AUTOLOAD`` is set;
3. plugins named with ``-p module.path`` or ``-p path/to/file.py``.

``-p no:NAME`` blocks a plugin by name before anything loads. A plugin that
fails to load is kept aside as *broken* (with its error), so that listing
still works for the rest.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pluggy

from . import hookspecs
from .errors import PluginError, UsageError

ENTRY_POINT_GROUP = "cifar_bench"
AUTOLOAD_ENV = "CIFAR_BENCH_DISABLE_PLUGIN_AUTOLOAD"

#: Built-in plugins: plugin name -> module. Each is an ordinary plugin.
DEFAULT_PLUGINS = {
    "datasets": "cifar_bench.plugins.datasets",
    "baseline": "cifar_bench.plugins.baseline",
}


@dataclass(frozen=True)
class PluginInfo:
    name: str
    source: str  # "built-in", "entry point", "module" or "file"
    version: str | None
    hooks: tuple[str, ...]
    location: str = ""


@dataclass
class Plugins:
    """A loaded plugin manager, with what was loaded and what was not."""

    pm: pluggy.PluginManager
    info: dict[str, PluginInfo] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # name -> error

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.pm.hook

    def check_broken(self) -> None:
        """Refuse to run with a broken plugin: its components might be the ones asked for."""
        for name, error in self.broken.items():
            raise PluginError(f"{error} (disable it with -p no:{name})")


def build(
    plugins: Sequence[str] = (),
    *,
    autoload: bool | None = None,
) -> Plugins:
    """Make the plugin manager and load every plugin, as described in the module docs."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    loaded = Plugins(pm)

    blocked = {p[3:] for p in plugins if p.startswith("no:")}
    for name in blocked:
        pm.set_blocked(name)

    for name, module in DEFAULT_PLUGINS.items():
        if name not in blocked:
            _register(loaded, name, "built-in", lambda m=module: importlib.import_module(m))

    if autoload is None:
        autoload = not os.environ.get(AUTOLOAD_ENV)
    if autoload:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in blocked:
                continue
            version = ep.dist.version if ep.dist is not None else None
            _register(loaded, ep.name, "entry point", ep.load, version, ep.value)

    for spec in plugins:
        if spec.startswith("no:"):
            continue
        if spec.endswith(".py") or os.sep in spec or "/" in spec:
            path = Path(spec)
            if not path.is_file():
                raise UsageError(f"-p {spec}: no such plugin file")
            name = path.stem
            if name not in blocked:
                _register(loaded, name, "file", lambda p=path: _import_file(p), location=str(path))
        elif spec not in blocked:
            _register(loaded, spec, "module", lambda m=spec: importlib.import_module(m))
    return loaded


def _register(
    loaded: Plugins,
    name: str,
    source: str,
    load,
    version: str | None = None,
    location: str = "",
) -> None:
    if loaded.pm.get_plugin(name) is not None or name in loaded.broken:
        raise PluginError(
            f"two plugins are named {name!r} ({loaded.info[name].source if name in loaded.info else 'broken'} "
            f"and {source}): rename one, or disable one with -p no:{name}"
        )
    try:
        plugin = load()
    except Exception as exc:
        loaded.broken[name] = f"plugin {name!r} ({source}) failed to import: {type(exc).__name__}: {exc}"
        return
    try:
        loaded.pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        loaded.broken[name] = f"plugin {name!r} ({source}) has a bad hook: {_first_line(exc)}"
        return
    except ValueError as exc:  # the same object registered twice under two names
        raise PluginError(f"plugin {name!r}: {exc}") from None
    hooks = tuple(sorted(h.name for h in loaded.pm.get_hookcallers(plugin) or ()))
    if version is None and isinstance(plugin, ModuleType):
        version = getattr(plugin, "__version__", None)
    if not location and isinstance(plugin, ModuleType):
        location = getattr(plugin, "__name__", "")
    loaded.info[name] = PluginInfo(name, source, version, hooks, location)


def register_inline(loaded: Plugins, plugin: object, name: str) -> None:
    """Register an object made by the harness itself (the console, for instance)."""
    loaded.pm.register(plugin, name=name)


def _import_file(path: Path) -> ModuleType:
    module_name = f"cifar_bench_local_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
