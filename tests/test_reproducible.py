"""The same command, seed and machine give the same numbers: CPU settings are decided once per machine and step."""

from __future__ import annotations

import json

import pytest

from cifar_bench.training import tuning as cpu_tuning

TINY = ("--dataset", "synthetic", "--limit-train", "80", "--limit-test", "40", "--epochs", "2", "--quiet")


@pytest.fixture
def noisy_tuner(monkeypatch):
    """Tuning whose timings come out differently every time: each measurement crowns another candidate."""
    calls = []

    def tune(step, options):
        step()
        best = options[len(calls) % len(options)]
        calls.append(best)
        return best, {o.label: (1.0 if o == best else 2.0) + len(calls) for o in options}

    monkeypatch.setattr(cpu_tuning, "tune", tune)
    return calls


def run(run_cli, tmp_path, name, *flags) -> dict:
    folder = tmp_path / name
    result = run_cli("run", "baseline", *TINY, "--cache-dir", tmp_path / "cache", "--results-dir", folder, *flags)
    assert result.code == 0, result
    (path,) = folder.glob("*.json")
    return json.loads(path.read_text())


def test_runs_keep_the_first_decision_and_give_identical_results(run_cli, tmp_path, noisy_tuner):
    first = run(run_cli, tmp_path, "a")
    second = run(run_cli, tmp_path, "b")
    assert len(noisy_tuner) == 1  # measured once; the second run kept the decision
    assert first["cpu"]["decision"] == "measured" and second["cpu"]["decision"] == "kept"
    assert (second["cpu"]["threads"], second["cpu"]["onednn"]) == (first["cpu"]["threads"], first["cpu"]["onednn"])
    assert second["metrics"]["epoch_loss"] == first["metrics"]["epoch_loss"]  # bit for bit
    assert second["metrics"]["test_accuracy"] == first["metrics"]["test_accuracy"]


def test_retune_measures_again_and_later_runs_keep_the_new_decision(run_cli, tmp_path, noisy_tuner):
    first = run(run_cli, tmp_path, "a")
    retuned = run(run_cli, tmp_path, "b", "--retune")
    after = run(run_cli, tmp_path, "c")
    assert len(noisy_tuner) == 2 and retuned["cpu"]["decision"] == "measured"
    assert retuned["cpu"]["measured_at"] >= first["cpu"]["measured_at"]
    chosen = (retuned["cpu"]["threads"], retuned["cpu"]["onednn"])
    assert (after["cpu"]["threads"], after["cpu"]["onednn"]) == chosen and after["cpu"]["decision"] == "kept"


def test_another_step_signature_gets_its_own_decision(run_cli, tmp_path, noisy_tuner):
    run(run_cli, tmp_path, "a")
    other = run(run_cli, tmp_path, "b", "--batch-size", "8")
    assert len(noisy_tuner) == 2 and other["cpu"]["decision"] == "measured"
    decisions = json.loads((tmp_path / "cache" / cpu_tuning.DECISIONS_FILE).read_text())
    assert len(decisions) == 2


def test_a_corrupt_decisions_file_is_measured_again_not_an_error(run_cli, tmp_path, noisy_tuner):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / cpu_tuning.DECISIONS_FILE).write_text("{not json")
    record = run(run_cli, tmp_path, "a")
    assert record["cpu"]["decision"] == "measured" and len(noisy_tuner) == 1


def test_the_decision_is_printed(run_cli, tmp_path, noisy_tuner):
    result = run_cli("run", "baseline", *TINY[:-1], "--cache-dir", tmp_path / "cache", "--results-dir", tmp_path / "r")
    assert "CPU settings:" in result.out and "(measured now)" in result.out


def test_tuning_on_the_run_s_own_batches_leaves_its_batch_order_and_state_alone(run_cli, tmp_path, monkeypatch):
    def tune(step, options):  # 300 real training steps, then the settings training would have anyway
        for _ in range(300):
            step()
        return cpu_tuning.current(), {}

    monkeypatch.setattr(cpu_tuning, "tune", tune)
    tuned = run(run_cli, tmp_path, "a", "--threads", "1")
    plain = run(run_cli, tmp_path, "b", "--threads", "1", "--no-cpu-tune")
    assert (tuned["cpu"]["threads"], tuned["cpu"]["onednn"]) == (plain["cpu"]["threads"], plain["cpu"]["onednn"])
    assert tuned["metrics"]["epoch_loss"] == plain["metrics"]["epoch_loss"]


def test_training_s_step_time_is_checked_against_what_tuning_measured():
    chosen = cpu_tuning.CpuSettings(1, False)
    decision = cpu_tuning.Decision(chosen, {chosen.label: 1.0}, "now", "measured", "k")
    assert decision.check(1.1, 500) == {
        "after_steps": 500, "trained_ms_per_step": 1.1, "ratio_to_tuned": 1.1, "slower_than_tuned": False
    }  # fmt: skip
    assert decision.check(1.6, 500)["slower_than_tuned"] is True


def test_a_run_records_the_check(run_cli, tmp_path, noisy_tuner):
    record = run(run_cli, tmp_path, "a")
    check = record["cpu"]["check"]
    assert check["after_steps"] == 20 and check["trained_ms_per_step"] > 0  # 80 images / batch 4, epoch 1
