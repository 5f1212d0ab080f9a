"""Where plugins come from: built-ins, entry points, -p module, -p file, -p no:NAME, the autoload switch,
and what ``cifar-bench plugins`` says about them."""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

import pytest

import cifar_bench
from cifar_bench.commands.cli import main
from cifar_bench.hooks import manager

PROBE = """
from cifar_bench import hookimpl
import torch

__version__ = "{version}"

@hookimpl
def register_models(register):
    register("{model}", lambda hp: torch.nn.Linear(3 * 32 * 32, 10), "a probe")
"""


@pytest.fixture(autouse=True)
def no_installed_plugins(monkeypatch):
    monkeypatch.setenv(manager.AUTOLOAD_ENV, "1")


def write_plugin(folder: Path, module: str, model: str, version: str = "1.2.3") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module}.py"
    path.write_text(PROBE.format(model=model, version=version))
    return path


def install_fake_distribution(site: Path, dist: str, version: str, entry_points: dict[str, str]) -> None:
    """What pip leaves in site-packages for a package with entry points, minus the files' record."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{manager.ENTRY_POINT_GROUP}]\n{lines}")


def block_other_entry_points(keep: set[str]) -> list[str]:
    """-p no:NAME for every installed entry point but ``keep``, so that no dev-machine plugin counts."""
    names = {ep.name for ep in importlib.metadata.entry_points(group=manager.ENTRY_POINT_GROUP)}
    return [f"-pno:{name}" for name in sorted(names - keep - set(manager.DEFAULT_PLUGINS))]


def plugins_json(capsys, *args: str) -> dict[str, dict]:
    capsys.readouterr()
    assert main([*args, "plugins", "--json"]) == 0
    return {row["name"]: row for row in json.loads(capsys.readouterr().out)}


def test_built_in_plugins_are_listed_with_cifar_bench_version_and_hooks(capsys):
    rows = plugins_json(capsys)
    assert list(rows)[: len(manager.DEFAULT_PLUGINS)] == list(manager.DEFAULT_PLUGINS)
    for name, module in manager.DEFAULT_PLUGINS.items():
        assert rows[name]["source"] == "built-in"
        assert rows[name]["version"] == cifar_bench.__version__
        assert rows[name]["location"] == module
        assert rows[name]["error"] is None
    assert rows["baseline"]["hooks"] == [
        "register_losses",
        "register_models",
        "register_optimizers",
        "register_recipes",
        "register_transforms",
    ]


def test_plugins_table_for_people(capsys):
    assert main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "version", "source", "status", "hooks", "location"]
    baseline = next(line for line in lines if line.startswith("baseline "))
    assert "built-in" in baseline and "register_models" in baseline and " ok " in baseline


@pytest.mark.parametrize("where", ["before", "after"])
def test_p_module_before_or_after_the_subcommand(tmp_path, monkeypatch, capsys, where):
    write_plugin(tmp_path, "cb_probe_where", "probe_where")
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["-p", "cb_probe_where", "list"] if where == "before" else ["list", "-p", "cb_probe_where"]
    assert main(args) == 0
    assert "probe_where" in capsys.readouterr().out


def test_p_module_is_found_in_the_current_folder(tmp_path, monkeypatch, capsys):
    # The cifar-bench console script does not search the current folder; -p does.
    write_plugin(tmp_path, "cb_probe_cwd", "probe_cwd")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    rows = plugins_json(capsys, "-p", "cb_probe_cwd")
    assert rows["cb_probe_cwd"]["source"] == "module"
    assert rows["cb_probe_cwd"]["version"] == "1.2.3"  # its __version__
    assert rows["cb_probe_cwd"]["hooks"] == ["register_models"]


def test_p_file(tmp_path, capsys):
    path = write_plugin(tmp_path, "my_local", "probe_file", version="0.0.1")
    rows = plugins_json(capsys, "-p", str(path))
    assert rows["my_local"] == {
        "name": "my_local",
        "source": "file",
        "version": "0.0.1",
        "hooks": ["register_models"],
        "location": str(path),
        "error": None,
    }
    assert main(["list", "-p", str(path)]) == 0
    assert "probe_file" in capsys.readouterr().out


def test_p_twice_or_a_built_in_module_loads_it_once(tmp_path, capsys):
    path = str(write_plugin(tmp_path, "twice", "probe_twice"))
    assert main(["-p", path, "list", "-p", path, "-p", "cifar_bench.plugins.baseline"]) == 0
    out = capsys.readouterr().out
    assert out.count("probe_twice") == 1
    assert sum(line.split()[:2] == ["model", "net"] for line in out.splitlines()) == 1


def test_p_no_name_disables_a_built_in(capsys):
    assert main(["-p", "no:baseline", "list"]) == 0
    out = capsys.readouterr().out
    assert "baseline" not in out and "synthetic" in out
    assert main(["run", "baseline", "-p", "no:baseline", "--dataset", "synthetic"]) == 2
    assert "unknown recipe 'baseline'" in capsys.readouterr().err


def test_entry_point_plugins_load_unless_the_environment_says_not(tmp_path, monkeypatch, capsys):
    write_plugin(tmp_path, "cb_probe_dist", "probe_dist")
    install_fake_distribution(tmp_path, "cb-probe-dist", "4.5.6", {"probe": "cb_probe_dist"})
    monkeypatch.syspath_prepend(str(tmp_path))

    assert "probe" not in plugins_json(capsys)  # AUTOLOAD_ENV=1, from the fixture

    for value in ("", "0"):
        monkeypatch.setenv(manager.AUTOLOAD_ENV, value)
        rows = plugins_json(capsys, *block_other_entry_points({"probe"}))
        assert rows["probe"]["source"] == "entry point"
        assert rows["probe"]["version"] == "4.5.6"  # the distribution's, not the module's __version__
        assert rows["probe"]["location"] == "cb_probe_dist from cb-probe-dist"

    assert "probe" not in plugins_json(capsys, "-p", "no:probe")
    assert "probe" in manager.build(autoload=True).info
    assert "probe" not in manager.build(autoload=False).info


def test_broken_third_party_plugin_does_not_stop_list(tmp_path, monkeypatch, capsys):
    (tmp_path / "cb_broken_dist.py").write_text("raise RuntimeError('half-installed')\n")
    write_plugin(tmp_path, "cb_fine_dist", "probe_fine")
    install_fake_distribution(tmp_path, "cb-broken", "1.0", {"broken": "cb_broken_dist"})
    install_fake_distribution(tmp_path, "cb-fine", "1.0", {"fine": "cb_fine_dist"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(manager.AUTOLOAD_ENV)
    others = block_other_entry_points({"broken", "fine"})

    assert main([*others, "list"]) == 0
    out = capsys.readouterr().out
    assert "probe_fine" in out and "net" in out  # the rest is listed
    assert "broken plugin 'broken': plugin 'broken' (entry point) failed to import: RuntimeError: half-installed" in out

    rows = plugins_json(capsys, *others)
    assert rows["broken"]["error"].startswith("plugin 'broken' (entry point) failed to import")
    assert rows["fine"]["error"] is None

    assert main([*others, "run", "baseline", "--dataset", "synthetic"]) == 2
    err = capsys.readouterr().err
    assert "plugin 'broken'" in err and "-p no:broken" in err
    manager.build([*(o[2:] for o in others), "no:broken"]).check_broken()  # disabling it is the way out


def test_p_nonexistent_file_or_bad_spec_is_a_usage_error(capsys):
    assert main(["-p", "missing/plugin.py", "list"]) == 2
    assert "-p missing/plugin.py: no such plugin file" in capsys.readouterr().err
    assert main(["-p", "not a module", "list"]) == 2
    assert "not a module path" in capsys.readouterr().err


def test_two_plugins_with_one_name(tmp_path, capsys):
    first = write_plugin(tmp_path / "a", "same", "probe_a")
    second = write_plugin(tmp_path / "b", "same", "probe_b")
    assert main(["-p", str(first), "-p", str(second), "list"]) == 0
    out = capsys.readouterr().out
    assert "broken plugin 'same': two plugins are named 'same'" in out
    assert str(first) in out and str(second) in out
    assert main(["-p", str(first), "-p", str(second), "run", "baseline"]) == 2
    assert "two plugins are named 'same'" in capsys.readouterr().err
