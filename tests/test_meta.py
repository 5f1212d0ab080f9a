"""Tests about the tests and docs, as datasette does: a hook spec without a test and a docs entry fails.

Also: each hook's example in docs/writing-plugins.md loads as a plugin and implements that hook,
and the built-in plugins use only the public API.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import cifar_bench
from cifar_bench.hooks import manager
from cifar_bench.hooks import specs as hookspecs
from cifar_bench.hooks.components import COMPONENT_KINDS
from cifar_bench.hooks.registry import collect

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "writing-plugins.md"
HOOK_TESTS = Path(__file__).with_name("test_hooks.py")
SPEC_MARKER = f"{hookspecs.PROJECT_NAME}_spec"  # the attribute pluggy's HookspecMarker sets

HOOKS = sorted(name for name, value in vars(hookspecs).items() if hasattr(value, SPEC_MARKER))


def hook_sections() -> dict[str, str]:
    """The docs' text under each hook heading (``### `name(args)` ``), up to the next heading."""
    text = DOCS.read_text(encoding="utf-8")
    headings = list(re.finditer(r"^#{2,4} `(\w+)\(.*\)`\s*$", text, flags=re.MULTILINE))
    return {
        m.group(1): text[m.end() : headings[i + 1].start() if i + 1 < len(headings) else len(text)]
        for i, m in enumerate(headings)
    }


def hook_tests() -> set[str]:
    tree = ast.parse(HOOK_TESTS.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_the_hook_specs_are_found():
    # Guards the checks below against passing on an empty list.
    assert {"register_models", "register_recipes", "run_start", "run_end"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook):
    assert f"test_hook_{hook}" in hook_tests(), f"add test_hook_{hook} to tests/test_hooks.py"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    assert hook in hook_sections(), f"add a '### `{hook}(...)`' section to docs/writing-plugins.md"


def test_no_test_or_docs_for_a_hook_that_does_not_exist():
    stale_tests = {t.removeprefix("test_hook_") for t in hook_tests() if t.startswith("test_hook_")}
    assert stale_tests - set(HOOKS) == set()
    assert set(hook_sections()) - set(HOOKS) == set()


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_docs_example_loads_and_implements_the_hook(hook, tmp_path, monkeypatch):
    monkeypatch.setenv(manager.AUTOLOAD_ENV, "1")
    blocks = re.findall(r"```python\n(.*?)```", hook_sections().get(hook, ""), flags=re.DOTALL)
    assert blocks, f"the docs section of {hook} has no python example"
    path = tmp_path / f"docs_{hook}.py"
    path.write_text(blocks[0], encoding="utf-8")
    plugins = manager.build([str(path)])
    plugins.check_broken()
    assert hook in plugins.info[path.stem].hooks
    collect(plugins)  # registers without clashing with the built-ins


#: The built-in plugins kept in plugins/ (the built-in commands plugin is the command line's own, in the core).
COMPONENT_PLUGINS = sorted(n for n, m in manager.DEFAULT_PLUGINS.items() if m.startswith("cifar_bench.plugins."))


def test_the_component_plugins_are_found():
    assert {"baseline", "datasets"} <= set(COMPONENT_PLUGINS)


@pytest.mark.parametrize("name", COMPONENT_PLUGINS)
def test_built_in_plugins_use_only_the_public_api(name):
    path = ROOT / "plugins" / f"{manager.DEFAULT_PLUGINS[name].rpartition('.')[2]}.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cifar_bench."):
            pytest.fail(f"{path.name} imports from {node.module}: use 'from cifar_bench import ...'")
        if isinstance(node, ast.ImportFrom) and node.module == "cifar_bench":
            private = [a.name for a in node.names if a.name not in cifar_bench.__all__]
            assert not private, f"{path.name} imports {private}, which cifar_bench.__all__ does not export"
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("cifar_bench.") for a in node.names), path.name


def test_everything_in_the_public_api_can_be_imported():
    for name in cifar_bench.__all__:
        assert getattr(cifar_bench, name) is not None, name


RECIPE_PLUGINS = sorted({e.plugin for e in collect(manager.build(autoload=False)) if e.kind == "recipe"})


@pytest.mark.parametrize("name", RECIPE_PLUGINS)
def test_each_built_in_recipe_runs_without_the_other_recipe_plugins(name):
    """A built-in plugin's recipes need no other recipe's plugin (resnet18 runs with -p no:baseline)."""
    others = [f"no:{p}" for p in RECIPE_PLUGINS if p != name]
    registry = collect(manager.build(others, autoload=False))
    recipes = [entry.factory for entry in registry if entry.kind == "recipe"]
    assert recipes and all(entry.plugin == name for entry in registry if entry.kind == "recipe")
    for recipe in recipes:
        for kind in COMPONENT_KINDS:
            if getattr(recipe, kind):
                registry.get(kind, getattr(recipe, kind))  # raises if a disabled plugin provided it


def test_every_built_in_component_is_described(monkeypatch):
    monkeypatch.setenv(manager.AUTOLOAD_ENV, "1")
    undescribed = [f"{e.kind} {e.name}" for e in collect(manager.build()) if not e.description.strip()]
    assert undescribed == []
