"""Tests for the example plugin: its factories alone, then the plugin inside cifar-bench."""

from __future__ import annotations

import json
import math

import pytest
import torch
from cifar_bench import UsageError, main

from cifar_bench_example import plugin

PLUGIN = "cifar_bench_example.plugin"
TINY_RUN = ["--dataset", "synthetic", "--limit-train", "200", "--limit-test", "50", "--epochs", "1",
            "--quiet", "--no-cache"]  # fmt: skip


@pytest.fixture(autouse=True)
def only_this_plugin(monkeypatch):
    # Load this plugin with -p, and no other installed plugin: the tests
    # then pass whatever else is installed, and without installing this one.
    monkeypatch.setenv("CIFAR_BENCH_DISABLE_PLUGIN_AUTOLOAD", "1")


def test_model_maps_images_to_logits():
    model = plugin.small_convnet({"num_classes": 10, "example_width": 8})
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_bad_width_is_a_usage_error():
    with pytest.raises(UsageError, match="example_width"):
        plugin.small_convnet({"example_width": 0})


def test_components_are_listed(capsys):
    assert main(["-p", PLUGIN, "list"]) == 0
    out = capsys.readouterr().out
    assert "example_convnet" in out
    assert "example " in out  # the recipe


def test_recipe_runs(tmp_path):
    assert main(["-p", PLUGIN, "run", "example", *TINY_RUN, "--results-dir", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "ok"
    assert record["components"]["model"] == {"name": "example_convnet", "plugin": PLUGIN}


def test_model_runs_in_another_recipe(tmp_path):
    args = ["run", "baseline", "--model", "example_convnet", "--batch-size", "50", *TINY_RUN]
    assert main(["-p", PLUGIN, *args, "--results-dir", str(tmp_path)]) == 0


def test_nan_alarm(capsys):
    run = type("Run", (), {"recipe": "example"})()
    epoch = type("Epoch", (), {"epoch": 3, "mean_loss": math.nan})()
    plugin.epoch_end(run=run, epoch=epoch)
    assert "epoch 3 loss is nan" in capsys.readouterr().err
