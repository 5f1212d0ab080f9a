"""The baseline on real CIFAR-10 (the offline JPEG copy in ../shared), on a subset: it learns, and its accuracy
falls as the built-in corruptions get more severe. One run, shared by the tests (about a minute on 2 cores)."""

import json

import pytest
from conftest import isolate

from cifar_bench.commands import cli
from cifar_bench.plugins import cifar_c

pytestmark = pytest.mark.offline_data  # deselect with -m "not offline_data"


@pytest.fixture(scope="module")
def record(tmp_path_factory, offline_cifar10) -> dict:
    """The record of ``run baseline`` on 10,000 real training images, with ``--evaluate corruptions``."""
    results = tmp_path_factory.mktemp("real-cifar10")
    # One thread and no CPU tuning: the same model wherever it runs (a tuned thread count trains another one).
    # 10,000 training images reach about 36%: trained less (27%), corruptions move accuracy within its noise.
    args = ["run", "baseline", "--data-dir", str(offline_cifar10), "--limit-train", "10000", "--limit-test", "1000",
            "--threads", "1", "--no-cpu-tune", "--quiet", "--evaluate", "corruptions", "--set",
            "corruption_images=1000", "--results-dir", str(results)]  # fmt: skip
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(tmp_path_factory, monkeypatch)
        assert cli.main(args) == 0
    (path,) = results.glob("*.json")
    return json.loads(path.read_text())


def test_baseline_loss_falls_on_real_cifar10(record):
    assert record["status"] == "ok"
    assert record["dataset"]["train_size"] == 10000 and record["dataset"]["test_size"] == 1000
    assert record["dataset"]["classes"][0] == "airplane" and len(record["dataset"]["classes"]) == 10
    first, second = record["metrics"]["epoch_loss"]
    assert second < first < 2.31  # below chance (ln 10) after one epoch, and falling
    assert record["metrics"]["test_accuracy"] > 0.25  # chance is 0.1


def test_accuracy_falls_with_severity_on_real_cifar10(record):
    """Published-style sanity check: the baseline, trained briefly on real images, loses accuracy as corruptions
    get more severe, for most corruptions and on average."""
    found = record["evaluations"]["corruptions"]
    table = found["tables"]["accuracy"]
    falling = [name for name in cifar_c.CORRUPTIONS if table[name]["5"] < table[name]["1"]]
    assert len(falling) >= 12, table  # of 18
    per_severity = found["details"]["per_severity"]
    assert per_severity["5"] < per_severity["3"] < per_severity["1"]
    assert found["metrics"]["mean_accuracy"] < found["details"]["clean_accuracy"]
    assert found["metrics"]["relative_drop"] > 0
