"""benchmarks/accuracy_gate.py: its plant must change training but not the work, and its analysis must count right.

The benchmark's figures are only worth something if the planted pool is the
same work as the plain one to ``compare`` (a plant that showed in the
records would be refused as different work), and if the plant really
changes what is learnt.
"""

from __future__ import annotations

import importlib.util
import json
import random

import pytest

import cifar_bench
from tests.conftest import ROOT


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load("accuracy_gate")


def small_run(folder, monkeypatch, noise: str | None) -> dict:
    if noise is None:
        monkeypatch.delenv("CIFAR_BENCH_PLANTED_LABEL_NOISE", raising=False)
    else:
        monkeypatch.setenv("CIFAR_BENCH_PLANTED_LABEL_NOISE", noise)
    plugin = str(ROOT / "benchmarks" / "noisy_labels_plugin.py")
    code = cifar_bench.main(["-p", plugin, "run", "baseline", "--loss", "cross_entropy_planted", "--dataset",
                             "synthetic", "--limit-train", "200", "--limit-test", "40", "--epochs", "1",
                             "--threads", "1", "--no-cpu-tune", "--quiet", "--results-dir", str(folder)])  # fmt: skip
    assert code == 0
    (path,) = folder.glob("*.json")
    return json.loads(path.read_text())


def test_the_plant_changes_training_but_not_the_work(tmp_path, monkeypatch):
    plain = small_run(tmp_path / "plain", monkeypatch, None)
    again = small_run(tmp_path / "again", monkeypatch, "0")
    planted = small_run(tmp_path / "planted", monkeypatch, "0.5")
    assert plain["workload"]["key"] == planted["workload"]["key"]  # compare pairs them as like work
    assert plain["metrics"]["epoch_loss"] == again["metrics"]["epoch_loss"]  # no plant: nothing changes
    assert plain["metrics"]["epoch_loss"] != planted["metrics"]["epoch_loss"]  # the plant trains on other labels


def fake_record(seed: int, accuracy: float) -> dict:
    data = {"train_size": 20000, "test_size": 10000}
    return {"status": "ok", "seed": seed, "metrics": {"test_accuracy": accuracy / 100},
            "workload": {"key": "k", "data": data}, "environment": {"torch": "2"}}  # fmt: skip


def write_pools(folder, plain_mean: float, planted_mean: float, seeds: int = 24) -> None:
    rng = random.Random(0)
    for name, offset, mean in (("plain", 0, plain_mean), ("planted-0.03", 1000, planted_mean)):
        (folder / name).mkdir(parents=True)
        for i in range(seeds):
            record = fake_record(offset + i, rng.gauss(mean, 1.0))
            (folder / name / f"{offset + i}.json").write_text(json.dumps(record))


def test_analysis_of_reused_pools_counts_false_alarms_and_power(bench, tmp_path, capsys):
    write_pools(tmp_path, 40.0, 37.0)  # a 3-point loss against SD 1: caught nearly always at 10 seeds
    code = bench.main(["--pool-dir", str(tmp_path), "--noise", "0.03", "--sizes", "5,10", "--comparisons", "60",
                       "--no-train"])  # fmt: skip
    out = capsys.readouterr().out
    assert code in (0, 1)  # 1 when the A/A target is missed: chance, with 60 overlapping draws from 24 seeds
    identical = [line.split("|") for line in out.splitlines() if line.startswith(("| 5 ", "| 10 "))]
    planted = [line.split("|") for line in out.splitlines() if line.startswith("| 3% labels")]
    assert [int(row[1]) for row in identical] == [5, 10]
    assert [int(row[3]) for row in planted] == [5, 10]
    assert planted[1][4].strip().startswith(("60/60", "59/60", "58/60")), planted[1]
    assert "pools reused, nothing trained" in out and "machine:" in out


def test_a_pool_too_small_for_the_sizes_is_refused_without_training(bench, tmp_path):
    write_pools(tmp_path, 40.0, 37.0, seeds=8)
    with pytest.raises(SystemExit, match="too few"):
        bench.main(["--pool-dir", str(tmp_path), "--noise", "0.03", "--sizes", "5", "--no-train"])


def test_wilson_interval(bench):
    low, high = bench.wilson(0, 400)
    assert low == pytest.approx(0, abs=1e-12) and 0.009 < high < 0.0096  # 0 of 400: under 1%, at 95%
    low, high = bench.wilson(20, 400)
    assert low < 0.05 < high


def test_one_seed_a_side_measures_the_single_run_threshold(bench, tmp_path, capsys):
    write_pools(tmp_path, 40.0, 33.0)  # a 7-point loss against SD 1 a run: beyond the 5-point single-run threshold
    code = bench.main(["--pool-dir", str(tmp_path), "--noise", "0.03", "--sizes", "1", "--comparisons", "60",
                       "--no-train"])  # fmt: skip
    out = capsys.readouterr().out
    identical = next(line.split("|") for line in out.splitlines() if line.startswith("| 1 "))
    planted = next(line.split("|") for line in out.splitlines() if line.startswith("| 3% labels"))
    assert code == 0 and identical[2].strip().startswith("0/60") and "none (no test)" in identical[4]
    assert int(planted[4].split("/")[0]) >= 50 and "none (no test)" in planted[6]  # most 1-vs-1 pairs caught
    assert "larger than 5, no test" in out
