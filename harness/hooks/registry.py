"""The registry: every component the loaded plugins provide, by kind and name.

Built once per process by calling each ``register_*`` hook with a callback
that records which plugin provided what. Duplicate names are refused, naming
both plugins: silently preferring one would make results depend on plugin
load order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pluggy

from ..errors import PluginError, unknown_name
from .components import KINDS, Recipe


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    kind: str
    name: str
    factory: Any  # the factory; for recipes, the Recipe itself
    plugin: str  # name of the plugin that registered it
    description: str = ""


class Registry:
    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}

    def add(self, entry: Entry) -> None:
        existing = self._entries[entry.kind].get(entry.name)
        if existing is not None and existing.plugin == entry.plugin:
            raise PluginError(f"plugin {entry.plugin!r} registers {entry.kind} {entry.name!r} twice")
        if existing is not None:
            raise PluginError(
                f"{entry.kind} {entry.name!r} is registered by both plugin "
                f"{existing.plugin!r} and plugin {entry.plugin!r}: rename one, "
                f"or disable one with -p no:{entry.plugin}"
            )
        self._entries[entry.kind][entry.name] = entry

    def get(self, kind: str, name: str) -> Entry:
        try:
            return self._entries[kind][name]
        except KeyError:
            hint = "see 'cifar-bench list'"
            raise unknown_name(kind, name, self._entries[kind], hint) from None

    def __iter__(self) -> Iterator[Entry]:
        for kind in KINDS:
            yield from (self._entries[kind][name] for name in sorted(self._entries[kind]))

    def recipe(self, name: str) -> Recipe:
        return self.get("recipe", name).factory


def collect(pm: pluggy.PluginManager) -> Registry:
    """Call every component hook of every plugin and gather what they register."""
    registry = Registry()
    for kind, spec in KINDS.items():
        hook_name = spec.hook
        hook = getattr(pm.hook, hook_name)
        # Called one implementation at a time (not through pm.hook) so that
        # every component is attributed to the plugin that registered it.
        # get_hookimpls() is in registration order (pluggy calls it reversed),
        # so a clash blames the later plugin, usually the third-party one.
        for impl in hook.get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                continue
            args = {"register": _register_callback(registry, kind, impl.plugin_name)}
            try:
                impl.function(*(args[name] for name in impl.argnames))
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r}: {hook_name} failed: {type(exc).__name__}: {exc}"
                ) from exc
    return registry


def _register_callback(registry: Registry, kind: str, plugin: str) -> Callable[..., None]:
    if kind == "recipe":

        def register_recipe(recipe: Recipe) -> None:
            if not isinstance(recipe, Recipe):
                raise PluginError(
                    f"plugin {plugin!r}: register_recipes registered "
                    f"{type(recipe).__name__}, expected cifar_bench.Recipe"
                )
            required = ("name", *(name for name, spec in KINDS.items() if spec.in_recipe == "required"))
            bad = [k for k in required if not isinstance(getattr(recipe, k), str) or not getattr(recipe, k)]
            if recipe.scheduler is not None and not isinstance(recipe.scheduler, str):
                bad.append("scheduler")
            if bad:
                raise PluginError(f"plugin {plugin!r}: recipe {recipe.name!r} needs a name string for {', '.join(bad)}")
            if not isinstance(recipe.hyperparameters, Mapping):
                raise PluginError(
                    f"plugin {plugin!r}: recipe {recipe.name!r} hyperparameters must be a mapping, "
                    f"got {type(recipe.hyperparameters).__name__}"
                )
            registry.add(Entry("recipe", recipe.name, recipe, plugin, recipe.description))

        return register_recipe

    def register(name: str, factory: Callable[..., Any], description: str = "") -> None:
        if not isinstance(name, str) or not name or not callable(factory) or not isinstance(description, str):
            raise PluginError(
                f"plugin {plugin!r}: {KINDS[kind].hook} must call register(name, factory, description=''), "
                f"got register({name!r}, {factory!r}, {description!r})"
            )
        registry.add(Entry(kind, name, factory, plugin, description))

    return register
