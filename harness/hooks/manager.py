"""The plugin manager: which plugins are loaded, from where, and in what order.

Order of loading (later plugins are called first, as in pluggy):

1. the built-in plugins in :data:`DEFAULT_PLUGINS`, ordinary modules that use
   only the public API;
2. installed plugins from the ``cifar_bench`` entry-point group, unless the
   environment variable ``CIFAR_BENCH_DISABLE_PLUGIN_AUTOLOAD`` is set;
3. plugins named with ``-p module.path`` or ``-p path/to/file.py``.

``-p no:NAME`` blocks a plugin by name before anything loads. A plugin that
fails to load (an import error, a hook whose arguments do not match its spec,
a hook that does not exist, a name already taken) is kept aside as *broken*,
with a one-line error and the exception behind it, so that listing still
works for the rest and ``--traceback`` can show the details.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import pluggy

from ..errors import ObserverError, PluginError, UsageError, first_line
from ..version import __version__
from . import specs

ENTRY_POINT_GROUP = "cifar_bench"
AUTOLOAD_ENV = "CIFAR_BENCH_DISABLE_PLUGIN_AUTOLOAD"

#: Built-in plugins: plugin name -> module. Each is an ordinary plugin.
DEFAULT_PLUGINS = {
    "commands": "cifar_bench.commands.builtin",  # the built-in subcommands (register_commands)
    "datasets": "cifar_bench.plugins.datasets",
    "baseline": "cifar_bench.plugins.baseline",
    "augment": "cifar_bench.plugins.augment",
    "losses": "cifar_bench.plugins.losses",
    "optimizers": "cifar_bench.plugins.optimizers",
    "schedules": "cifar_bench.plugins.schedules",
    "resnet": "cifar_bench.plugins.resnet",
    "airbench": "cifar_bench.plugins.airbench",
    "trackers": "cifar_bench.plugins.trackers",  # --track mlflow / tensorboard (their libraries: extras)
    "corruptions": "cifar_bench.plugins.corruptions",  # evaluations after training (run --evaluate)
    "calibration": "cifar_bench.plugins.calibration",
}

#: The built-in plugins the command line is built from: light to import (no torch), and the only built-ins
#: with commands. The component plugins load when a command needs the registry.
COMMAND_PLUGINS = ("commands",)

#: The hooks the training loop calls at its edges; each observer is called on its own (see PluginManager.notify).
LIFECYCLE_HOOKS = ("run_start", "train_progress", "epoch_end", "run_end")


@dataclass(frozen=True)
class PluginInfo:
    """One plugin as ``cifar-bench plugins`` shows it; ``error`` is set when it is broken."""

    name: str
    source: str  # "built-in", "entry point", "module" or "file"
    version: str | None
    hooks: tuple[str, ...]
    location: str = ""  # module name, file path, or entry point value and its distribution
    error: str | None = None


class PluginManager(pluggy.PluginManager):
    """pluggy's plugin manager, with what was loaded and what was not, as pytest's own extends it.

    pluggy validates every plugin as it registers (a hook's arguments against
    its spec, and, through ``check_pending``, hooks that do not exist); this
    class keeps each plugin's :class:`PluginInfo` (a broken one's with its
    one-line error) and tells observers one at a time (:meth:`notify`).
    """

    def __init__(self) -> None:
        super().__init__(specs.PROJECT_NAME)
        self.add_hookspecs(specs)
        self.info: dict[str, PluginInfo] = {}  # every plugin by name, in load order, broken ones too
        self.causes: dict[str, BaseException] = {}  # a broken plugin's name -> the exception behind it

    @property
    def broken(self) -> dict[str, str]:
        """Each broken plugin's name -> its one-line error."""
        return {name: info.error for name, info in self.info.items() if info.error}

    def notify(self, hook_name: str, **kwargs: object) -> None:
        """Tell every observer of a lifecycle hook, each called on its own, in pluggy's order.

        One observer that raises does not keep the others from being told
        (a plugin storing records still gets the record when another one
        fails); the first failure is then raised as an
        :class:`~cifar_bench.errors.ObserverError` naming its plugin and the hook.
        """
        failure: ObserverError | None = None
        for impl in reversed(getattr(self.hook, hook_name).get_hookimpls()):
            try:
                impl.function(*(kwargs[name] for name in impl.argnames))
            except Exception as exc:
                failure = failure or ObserverError(impl.plugin_name, hook_name, exc)
        if failure is not None:
            raise failure

    def check_broken(self) -> None:
        """Refuse to run with a broken plugin: its components might be the ones asked for."""
        for name, error in self.broken.items():
            raise PluginError(
                f"{error} (disable it with -p no:{name}; --traceback shows the details)"
            ) from self.causes.get(name)

    def load(self, name: str, source: str, load: Callable[[], object], version: str | None = None,
             location: str = "") -> None:  # fmt: skip
        """Import one plugin and register it, or keep it as broken with a one-line error."""

        def broken(error: str, cause: BaseException | None = None) -> None:
            if cause is not None:
                self.causes[name] = cause
            self.info[name] = PluginInfo(name, source, version, (), location, error)

        if name in self.info:
            # Keep the first loaded, but refuse to run: refusing the second by name is what makes the clash visible.
            first = self.info[name]
            error = (
                f"two plugins are named {name!r}: the {first.source} one ({first.location}) and the "
                f"{source} one ({location}); rename one, or disable both with -p no:{name}"
            )
            self.info[name] = replace(first, error=error)
            return
        try:
            plugin = load()
        except Exception as exc:
            broken(f"plugin {name!r} ({source}) failed to import: {type(exc).__name__}: {first_line(exc)}", exc)
            return
        if plugin is None:
            broken(f"plugin {name!r} ({source}) loaded as None, not a module or an object with hooks")
            return
        if self.is_registered(plugin):
            return  # the same module again (as built-in and -p, say): pytest does nothing either
        wrapper = _wrapped_observer(self, plugin)
        if wrapper:
            broken(f"plugin {name!r} ({source}) has a bad hook: {wrapper!r} is an observer hook: "
                   "implement it plainly, not as a wrapper")  # fmt: skip
            return
        try:
            self.register(plugin, name=name)  # pluggy checks each hook's arguments against its spec
            self.check_pending()  # and that each hook exists (every plugin before this one passed)
        except pluggy.PluginValidationError as exc:
            if self.get_plugin(name) is not None:
                self.unregister(name=name)
            broken(f"plugin {name!r} ({source}) has a bad hook: {_explain(self, plugin, exc)}", exc)
            return
        hooks = tuple(sorted(h.name for h in self.get_hookcallers(plugin) or ()))
        if version is None:
            version = _version_of(plugin, source)
        if not location and isinstance(plugin, ModuleType):
            location = plugin.__name__
        self.info[name] = PluginInfo(name, source, version, hooks, location)


def build(
    plugins: Sequence[str] = (),
    *,
    autoload: bool | None = None,
    builtins: Sequence[str] | None = None,
) -> PluginManager:
    """Make the plugin manager and load every plugin, as described in the module docs.

    :param plugins: the ``-p`` values, in order: ``module.path``,
        ``path/to/file.py`` or ``no:NAME``.
    :param autoload: load the entry-point plugins; by default, unless
        ``CIFAR_BENCH_DISABLE_PLUGIN_AUTOLOAD`` is set to anything but "" or "0".
    :param builtins: which built-in plugins to load (all by default); the command
        line is built with :data:`COMMAND_PLUGINS` only, so that it imports no torch.
    """
    pm = PluginManager()
    blocked = {p[3:] for p in plugins if p.startswith("no:")}
    for name in blocked:
        pm.set_blocked(name)

    for name, module in DEFAULT_PLUGINS.items():
        if name not in blocked and (builtins is None or name in builtins):
            pm.load(name, "built-in", lambda m=module: importlib.import_module(m), location=module)

    if autoload is None:
        autoload = os.environ.get(AUTOLOAD_ENV, "") in ("", "0")
    if autoload:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in blocked:
                continue
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            where = f"{ep.value} from {dist}" if dist else ep.value
            pm.load(ep.name, "entry point", ep.load, version, where)

    seen: set[str] = set()
    for spec in plugins:
        if spec.startswith("no:") or spec in seen:  # -p X twice loads X once
            continue
        seen.add(spec)
        if spec.endswith(".py") or os.sep in spec or "/" in spec:
            path = Path(spec)
            if not path.is_file():
                raise UsageError(f"-p {spec}: no such plugin file")
            if path.stem not in blocked:
                pm.load(path.stem, "file", lambda p=path: _import_file(p), location=str(path))
        elif not all(part.isidentifier() for part in spec.split(".")):
            raise UsageError(f"-p {spec}: not a module path (a.b.c) or a .py file, nor no:NAME")
        elif spec not in blocked:
            pm.load(spec, "module", lambda m=spec: _import_module(m), location=spec)
    return pm


def _wrapped_observer(pm: PluginManager, plugin: object) -> str | None:
    """A lifecycle hook this plugin implements as a wrapper (they are called one by one: see notify)."""
    for attr in dir(plugin):
        opts = pm.parse_hookimpl_opts(plugin, attr)
        name = (opts or {}).get("specname") or attr
        if opts and name in LIFECYCLE_HOOKS and (opts.get("hookwrapper") or opts.get("wrapper")):
            return name
    return None


def _explain(pm: PluginManager, plugin: object, error: pluggy.PluginValidationError) -> str:
    """pluggy's verdict on a plugin, in one line that says what to change (a hook name, an argument)."""
    specs = {name: caller.spec for name, caller in vars(pm.hook).items() if getattr(caller, "spec", None)}
    for attr in dir(plugin):
        opts = pm.parse_hookimpl_opts(plugin, attr)
        if opts is None:
            continue
        hook_name = opts.get("specname") or attr
        spec = specs.get(hook_name)
        if spec is None:
            if opts.get("optionalhook"):
                continue
            close = difflib.get_close_matches(hook_name, specs, n=1, cutoff=0.6)
            hint = f": did you mean {close[0]!r}?" if close else f": the hooks are {', '.join(sorted(specs))}"
            return f"{hook_name!r} is not a cifar-bench hook{hint}"
        args = pluggy.HookImpl(plugin, attr, getattr(plugin, attr), opts).argnames
        extra = [a for a in args if a not in spec.argnames]
        if extra:
            return (
                f"{hook_name}({', '.join(args)}) takes {', '.join(repr(a) for a in extra)}, "
                f"which the hook does not pass; its arguments are ({', '.join(spec.argnames)})"
            )
    return "; ".join(str(error).splitlines())  # a wrapper that is not a generator, say: pluggy's own words


def _version_of(plugin: object, source: str) -> str | None:
    """A loaded plugin's version: cifar-bench's for built-ins, else ``__version__`` or its distribution's."""
    if source == "built-in":
        return __version__
    module = plugin if isinstance(plugin, ModuleType) else inspect.getmodule(type(plugin))
    if module is None:
        return None
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    top = module.__name__.partition(".")[0]
    for dist in importlib.metadata.packages_distributions().get(top, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def register_inline(pm: PluginManager, plugin: object, name: str) -> None:
    """Register an object made by the harness itself (the console, for instance)."""
    pm.register(plugin, name=name)


def _import_module(name: str) -> ModuleType:
    """Import a ``-p`` module, also from the current folder (a console script does not search it)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)  # last, so that it shadows nothing installed
    return importlib.import_module(name)


def _import_file(path: Path) -> ModuleType:
    module_name = f"cifar_bench_local_{path.stem}"
    stamp = (str(path.resolve()), path.stat().st_mtime_ns)
    loaded = sys.modules.get(module_name)
    if loaded is not None and getattr(loaded, "_cifar_bench_loaded_from", None) == stamp:
        return loaded  # the same file, unchanged (the command line, then the run, load plugins): run it once
    spec = importlib.util.spec_from_file_location(module_name, path.resolve())
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    module._cifar_bench_loaded_from = stamp
    sys.modules[module_name] = module  # before running it, as import does (dataclasses need it)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
