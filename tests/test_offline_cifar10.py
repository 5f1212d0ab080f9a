"""The baseline on real CIFAR-10 (the offline JPEG copy in ../shared), on a subset."""

import json

import pytest

pytestmark = pytest.mark.offline_data  # deselect with -m "not offline_data"


def test_baseline_loss_falls_on_real_cifar10(run_cli, tmp_path, offline_cifar10):
    args = ("--data-dir", offline_cifar10, "--limit-train", "4000", "--limit-test", "1000", "--quiet")
    result = run_cli("run", "baseline", *args, "--results-dir", tmp_path)
    assert result.code == 0, result
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["dataset"]["train_size"] == 4000 and record["dataset"]["test_size"] == 1000
    assert record["dataset"]["classes"][0] == "airplane" and len(record["dataset"]["classes"]) == 10
    first, second = record["metrics"]["epoch_loss"]
    assert second < first < 2.31  # below chance (ln 10) after one epoch, and falling
    assert record["metrics"]["test_accuracy"] > 0.2  # chance is 0.1
