"""Mixing recipes from the command line: --model/--optimizer/... and --set, recorded in the result."""

from __future__ import annotations

import json

import pytest

from cifar_bench.commands.cli import main
from cifar_bench.hooks import manager

# No CPU tuning: it times dozens of steps of each model (a minute for resnet18), and nothing here is about it.
TINY_RUN = ["--dataset", "synthetic", "--limit-train", "20", "--limit-test", "20", "--epochs", "1",
            "--batch-size", "20", "--quiet", "--no-cpu-tune"]  # fmt: skip


@pytest.fixture(autouse=True)
def no_installed_plugins(monkeypatch, tmp_path_factory):
    monkeypatch.setenv(manager.AUTOLOAD_ENV, "1")
    monkeypatch.setenv("CIFAR_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def run_record(tmp_path, *args: str) -> dict:
    assert main(["run", *args, *TINY_RUN, "--results-dir", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*.json")
    return json.loads(path.read_text())


def test_components_and_hyperparameters_are_overridden_and_recorded(tmp_path):
    record = run_record(tmp_path, "baseline", "--model", "resnet18", "--optimizer", "adamw", "--set", "lr=0.003")
    assert record["status"] == "ok"
    assert record["components"]["model"] == {"name": "resnet18", "plugin": "resnet"}
    assert record["components"]["optimizer"] == {"name": "adamw", "plugin": "optimizers"}
    assert record["components"]["loss"] == {"name": "cross_entropy", "plugin": "baseline"}  # the recipe's
    assert record["hyperparameters"]["lr"] == 0.003
    assert record["hyperparameters"]["momentum"] == 0.9  # the recipe's, untouched
    assert record["overrides"] == {
        "components": {"model": "resnet18", "optimizer": "adamw"},
        "hyperparameters": {"lr": 0.003, "epochs": 1, "batch_size": 20},
        "dataset": "synthetic",
        "limit_train": 20,
        "limit_test": 20,
    }
    assert record["workload"]["components"]["model"] == "resnet18 (resnet)"  # and so is the work done


def test_a_scheduler_and_transform_can_be_added_to_a_recipe_without_them(tmp_path):
    record = run_record(
        tmp_path, "baseline", "--transform", "crop_flip", "--scheduler", "cosine", "--set", "schedule_per=step"
    )
    assert record["components"]["scheduler"] == {"name": "cosine", "plugin": "schedules"}
    assert record["components"]["transform"] == {"name": "crop_flip", "plugin": "augment"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["baseline", "--model", "resnet"], "unknown model 'resnet': did you mean 'resnet18'"),
        (["baseline", "--optimizer", "adamv"], "unknown optimizer 'adamv': did you mean 'adam' or 'adamw'?"),
        (["baseline", "--loss", "label_smoothing"], "did you mean 'label_smoothing_ce'?"),
        (["baseline", "--scheduler", "cosin"], "unknown scheduler 'cosin': did you mean 'cosine'?"),
        (["airbech"], "unknown recipe 'airbech': did you mean 'airbench'"),
    ],
)
def test_unknown_names_get_the_closest_registered_ones(tmp_path, capsys, args, message):
    assert main(["run", *args, *TINY_RUN, "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bad_hyperparameter_for_a_built_in_component_is_a_usage_error(tmp_path, capsys):
    args = ["baseline", "--optimizer", "adam", "--set", "betas=[0.9]"]
    assert main(["run", *args, *TINY_RUN, "--results-dir", str(tmp_path)]) == 2
    assert "betas must be two numbers" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "lrr=0.01"], "'lrr' is read by no component of recipe 'baseline': did you mean 'lr'?"),
        (["--set", "batchsize=64"], "'batchsize' is read by no component of recipe 'baseline': did you mean"),
        (["--loss", "focal", "--set", "focal_gama=1.0"], "did you mean 'focal_gamma'?"),
        (["--set", "note=NaN"], "hyperparameter note must be a finite value, got nan"),
        (["--set", "momentum=Infinity"], "hyperparameter momentum must be a finite value, got inf"),
        (["--set", "betas=[0.9, -Infinity]"], "hyperparameter betas must be a finite value"),
    ],
)
def test_typos_and_impossible_values_stop_the_run_before_training(tmp_path, capsys, args, message):
    plugin = tmp_path / "focal.py"  # a plugin's loss reading its own hyperparameter
    plugin.write_text(FOCAL_PLUGIN)
    code = main(["run", "baseline", "-p", str(plugin), *args, *TINY_RUN, "--results-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").glob("*.json"))  # nothing trained


def test_a_key_the_plugin_reads_is_accepted(tmp_path):
    plugin = tmp_path / "focal.py"
    plugin.write_text(FOCAL_PLUGIN)
    record = run_record(tmp_path, "baseline", "-p", str(plugin), "--loss", "focal", "--set", "focal_gamma=1.5")
    assert record["status"] == "ok" and record["hyperparameters"]["focal_gamma"] == 1.5


FOCAL_PLUGIN = """
import torch
from cifar_bench import hookimpl


class Focal(torch.nn.Module):
    def __init__(self, gamma):
        super().__init__()
        self.gamma = gamma

    def forward(self, logits, labels):
        ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        return ((1 - torch.exp(-ce)) ** self.gamma * ce).mean()


@hookimpl
def register_losses(register):
    register("focal", lambda hp: Focal(hp.get("focal_gamma", 2.0)), "focal loss")
"""
