"""The example plugin package, pip-installed into a temporary folder, shows up and runs;
and docs/writing-plugins.md shows its files exactly as they are."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_bench.commands.cli import main
from cifar_bench.hooks import manager

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "cifar-bench-example"
DOCS = ROOT / "docs" / "writing-plugins.md"
TINY_RUN = ["--dataset", "synthetic", "--limit-train", "100", "--limit-test", "50", "--epochs", "1",
            "--batch-size", "50", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """``pip install`` the example (a copy: building writes into the source folder) into a folder."""
    work = tmp_path_factory.mktemp("example")
    source = shutil.copytree(EXAMPLE, work / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = work / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    try:  # offline, from the build backend already installed: about a second
        importlib.import_module("setuptools")
        offline = ["--no-build-isolation", "--no-index"]
    except ImportError:  # a venv without setuptools: let pip fetch it
        offline = []
    subprocess.run([*pip, *offline, str(source)], check=True, capture_output=True, timeout=300)
    return target


@pytest.fixture
def installed(site, monkeypatch) -> list[str]:
    """The example on the path, autoload on; returns -p no:NAME for every other installed plugin."""
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv(manager.AUTOLOAD_ENV, raising=False)
    names = {ep.name for ep in importlib.metadata.entry_points(group=manager.ENTRY_POINT_GROUP)}
    assert "example" in names
    return [f"-p=no:{name}" for name in sorted(names - {"example"} - set(manager.DEFAULT_PLUGINS))]


def test_installed_example_shows_up_in_plugins(installed, capsys):
    assert main([*installed, "plugins", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["example"] == {
        "name": "example",
        "source": "entry point",
        "version": "0.1.0",
        "hooks": ["epoch_end", "register_models", "register_recipes"],
        "location": "cifar_bench_example.plugin from cifar-bench-example",
        "error": None,
    }


def test_installed_example_components_are_listed(installed, capsys):
    assert main([*installed, "list"]) == 0
    rows = [line.split()[:3] for line in capsys.readouterr().out.splitlines()]
    assert ["model", "example_convnet", "example"] in rows
    assert ["recipe", "example", "example"] in rows


def test_installed_example_model_runs_in_the_baseline_recipe(installed, tmp_path):
    args = ["run", "baseline", "--model", "example_convnet", *TINY_RUN, "--results-dir", str(tmp_path)]
    assert main([*installed, *args]) == 0
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["components"]["model"] == {"name": "example_convnet", "plugin": "example"}
    assert record["components"]["recipe"] == {"name": "baseline", "plugin": "baseline"}


def test_installed_example_recipe_runs(installed, tmp_path):
    assert main([*installed, "run", "example", *TINY_RUN, "--results-dir", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*.json")
    assert json.loads(path.read_text())["components"]["scheduler"] == {"name": "cosine", "plugin": "schedules"}


def test_docs_show_the_example_files_as_they_are():
    text = DOCS.read_text(encoding="utf-8")
    shown = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, flags=re.DOTALL)
    assert {name for name, _ in shown} >= {
        "examples/cifar-bench-example/pyproject.toml",
        "examples/cifar-bench-example/src/cifar_bench_example/plugin.py",
        "examples/cifar-bench-example/tests/test_plugin.py",
    }
    for name, body in shown:
        assert body == (ROOT / name).read_text(encoding="utf-8"), f"docs/writing-plugins.md is stale for {name}"
