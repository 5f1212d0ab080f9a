"""`cifar-bench run`: records, data sources, and exit codes for good and bad input."""

import json
import os

import pytest

from cifar_bench.results.schema import SCHEMA_VERSION

REQUIRED = {
    "schema_version", "run_id", "status", "recipe", "components", "hyperparameters", "seed", "device",
    "dataset", "metrics", "timings", "throughput", "environment",
}  # fmt: skip


def only_record(results_dir):
    files = list(results_dir.glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def test_synthetic_run_writes_a_complete_record(run_cli, tmp_path, smoke):
    result = run_cli("run", "baseline", *smoke, "--results-dir", tmp_path)
    assert result.code == 0, result
    record = only_record(tmp_path)
    assert record.keys() >= REQUIRED
    assert record["schema_version"] == SCHEMA_VERSION
    assert record["status"] == "ok"
    assert record["components"]["model"] == {"name": "net", "plugin": "baseline"}
    assert record["components"]["dataset"] == {"name": "synthetic", "plugin": "datasets"}
    assert record["dataset"]["synthetic"] is True and record["dataset"]["name"] == "synthetic"
    assert (record["dataset"]["train_size"], record["dataset"]["test_size"]) == (200, 50)
    assert record["hyperparameters"]["epochs"] == 1 and record["hyperparameters"]["lr"] == 0.001
    metrics = record["metrics"]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert len(metrics["per_class_accuracy"]) == 10 and len(metrics["epoch_loss"]) == 1
    for key in ("train_s", "eval_s", "total_s"):
        assert record["timings"][key] > 0
    assert record["timings"]["total_s"] >= record["timings"]["train_s"] + record["timings"]["eval_s"]
    assert record["throughput"]["train_img_s"] > 0 and record["throughput"]["eval_img_s"] > 0
    env = record["environment"]
    assert env["torch"] and env["torchvision"] and env["python"] and env["cpu"] and env["threads"] >= 1
    # The printed summary names the accuracy and ends with the run's table.
    assert "Accuracy on test images:" in result.out
    assert result.out.rstrip().splitlines()[-1].startswith("baseline")


def test_image_folder_run_learns_and_records_the_folder(run_cli, tmp_path, image_folder):
    args = ("--data-dir", image_folder, "--epochs", "3", "--set", "lr=0.01", "--quiet")
    result = run_cli("run", "baseline", *args, "--results-dir", tmp_path / "r")
    assert result.code == 0, result
    record = only_record(tmp_path / "r")
    assert record["dataset"]["classes"] == ["cat", "dog", "frog"]
    assert record["dataset"]["synthetic"] is False
    assert (record["dataset"]["train_size"], record["dataset"]["test_size"]) == (24, 12)
    assert set(record["metrics"]["per_class_accuracy"]) == {"cat", "dog", "frog"}
    assert record["overrides"]["hyperparameters"] == {"epochs": 3, "lr": 0.01}


def test_the_tutorial_loss_log_is_printed_every_log_every_steps(run_cli, tmp_path):
    args = ("--dataset", "synthetic", "--limit-train", "400", "--limit-test", "50", "--epochs", "1")
    result = run_cli("run", "baseline", *args, "--set", "log_every=20", "--results-dir", tmp_path)
    assert result.code == 0, result
    lines = [line for line in result.out.splitlines() if line.startswith("[1,")]
    # 400 images / batch 4 = 100 steps, a line every 20: the tutorial's format.
    assert [line[:10] for line in lines] == [
        "[1,    20]",
        "[1,    40]",
        "[1,    60]",
        "[1,    80]",
        "[1,   100]",
    ]


def test_quiet_run_prints_no_loss_log_and_no_bar(run_cli, tmp_path, smoke):
    result = run_cli("run", "baseline", *smoke, "--set", "log_every=10", "--results-dir", tmp_path)
    assert result.code == 0
    assert "[1," not in result.out and "epoch 1/1" not in result.err


def test_no_data_and_no_network_names_data_dir(run_cli, tmp_path, no_network, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("run", "baseline", "--quiet")
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1
    assert "--data-dir" in result.err
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())


def fake_cifar10_download(root, *args, **kwargs):
    """Write what torchvision's CIFAR-10 download leaves behind, at toy size."""
    import pickle

    import numpy as np

    folder = __import__("pathlib").Path(kwargs.get("download_root", root)) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), "labels": list(range(10)) * 2}
        (folder / name).write_bytes(pickle.dumps(batch))
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": classes}))


def test_default_data_path_downloads_cifar10_with_torchvision(run_cli, tmp_path, monkeypatch):
    """The path real users take: torchvision's CIFAR10 under ./data with download (mocked here)."""
    import torchvision.datasets.cifar as tv_cifar

    calls = []

    def download(url, download_root, filename=None, md5=None, **kwargs):
        calls.append(url)
        fake_cifar10_download(download_root)

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", download)
    # The toy files cannot match the real archive's md5 sums: trust them if they exist.
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda path, md5=None: os.path.exists(path))
    monkeypatch.chdir(tmp_path)
    result = run_cli("run", "baseline", "--epochs", "1", "--quiet", "--no-cache")
    assert result.code == 0, result
    assert calls and "cifar-10" in calls[0]
    record = only_record(tmp_path / "results")
    assert record["dataset"]["name"] == "cifar10" and record["dataset"]["synthetic"] is False
    assert (record["dataset"]["train_size"], record["dataset"]["test_size"]) == (100, 20)
    assert "torchvision CIFAR10 in ./data" in record["dataset"]["source"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        pytest.param(("run", "baselin"), "did you mean 'baseline'", id="unknown-recipe"),
        pytest.param(("run", "baseline", "--model", "nett"), "did you mean 'net'", id="unknown-model"),
        pytest.param(("run", "baseline", "--dataset", "cifar100"), "unknown dataset 'cifar100'", id="unknown-dataset"),
        pytest.param(("run", "baseline", "--epochs", "0"), "--epochs", id="zero-epochs"),
        pytest.param(("run", "baseline", "--batch-size", "-4"), "--batch-size", id="negative-batch-size"),
        pytest.param(("run", "baseline", "--batch-size", "0"), "--batch-size", id="zero-batch-size"),
        pytest.param(("run", "baseline", "--target-acc", "1.5"), "--target-acc", id="target-acc-above-1"),
        pytest.param(("run", "baseline", "--target-acc", "-0.1"), "--target-acc", id="target-acc-below-0"),
        pytest.param(("run", "baseline", "--repeats", "0"), "--repeats", id="zero-repeats"),
        pytest.param(("run", "baseline", "--device", "tpu"), "unknown device 'tpu'", id="unknown-device"),
        pytest.param(("run", "baseline", "--loader", "fast"), "--loader", id="unknown-loader"),
        pytest.param(("run", "baseline", "--set", "epochs"), "KEY=VALUE", id="set-without-value"),
        pytest.param(
            ("run", "baseline", "--set", "epochs=-1", "--dataset", "synthetic"),
            "epochs must be",
            id="negative-epochs-via-set",
        ),
        pytest.param(
            ("run", "baseline", "--dataset", "synthetic", "--limit-train", "5000"),
            "--limit-train 5000",
            id="subset-too-large",
        ),
        pytest.param(("run", "baseline", "--data-dir", "/nonexistent/cifar"), "does not exist", id="missing-data-dir"),
        pytest.param(("frobnicate",), "invalid choice", id="unknown-command"),
        pytest.param(("run", "baseline", "--no-such-flag"), "unrecognized arguments", id="unknown-flag"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run_cli, tmp_path, args, needle):
    result = run_cli(*args, "--results-dir", tmp_path) if args[0] == "run" else run_cli(*args)
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cifar-bench: error:"), result.err
    assert needle in lines[0]
    assert not list(tmp_path.glob("*.json"))


def test_traceback_flag_shows_the_traceback(run_cli, tmp_path):
    with pytest.raises(Exception, match="baselin"):
        run_cli("--traceback", "run", "baselin", "--results-dir", tmp_path)


def test_list_shows_each_component_with_its_plugin(run_cli):
    result = run_cli("list")
    assert result.code == 0
    rows = {tuple(line.split()[:3]) for line in result.out.splitlines()}
    for kind, name in [("transform", "tutorial"), ("model", "net"), ("loss", "cross_entropy"),
                       ("optimizer", "sgd"), ("recipe", "baseline")]:  # fmt: skip
        assert (kind, name, "baseline") in rows
    assert ("dataset", "synthetic", "datasets") in rows
