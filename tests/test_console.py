"""The console observer: a redrawn bar on a terminal, a line now and then in a log, result blocks named."""

from __future__ import annotations

import io

from cifar_bench import console
from cifar_bench.hooks.events import RunInfo, TrainProgress

RUN = RunInfo(run_id="r1", recipe="baseline", device="cpu", loader="tensor", hyperparameters={}, dataset="synthetic",
              train_size=400, test_size=100, steps_per_epoch=100, epochs=2)  # fmt: skip


def progress(step: int) -> TrainProgress:
    return TrainProgress(epoch=1, step=step, steps_per_epoch=100, images_seen=4 * step, elapsed_s=0.1 * step,
                         running_loss=2.0)  # fmt: skip


def test_a_log_gets_a_progress_line_every_few_seconds_not_a_redrawn_bar(monkeypatch, capsys):
    clock = iter([0.0, 5.0, 31.0, 40.0, 62.0])  # seconds at each event
    monkeypatch.setattr(console.time, "monotonic", lambda: next(clock))
    observer = console.Console(stream=io.StringIO(), bar=False)
    for step in (50, 100, 150, 200, 250):
        observer.train_progress(RUN, progress(step))
    err = capsys.readouterr().err
    assert "\r" not in err
    assert [line.split(":")[1].split(",")[0] for line in err.splitlines()] == [" step 150/100", " step 250/100"]
    assert err.splitlines()[0].startswith("baseline epoch 1/2: step 150/100, loss 2.000")


def test_a_terminal_gets_the_bar(capsys):
    observer = console.Console(stream=io.StringIO(), bar=True)
    observer.train_progress(RUN, progress(50))
    observer._bars["r1"].refresh()
    assert "baseline epoch 1/2" in capsys.readouterr().err


def test_each_result_block_names_its_run_when_runs_take_turns(run_cli, tmp_path):
    flags = ("--dataset", "synthetic", "--limit-train", "40", "--limit-test", "20", "--epochs", "1", "--quiet")
    result = run_cli("run", "baseline", "--reference", "baseline", *flags, "--results-dir", tmp_path)
    assert result.code == 0, result
    lines = result.out.splitlines()
    headers = [line for line in lines if line.startswith("baseline on cpu") and line.endswith(":")]
    assert headers == ["baseline on cpu (reference):", "baseline on cpu:"]
    for header in headers:
        assert lines[lines.index(header) + 1].startswith("Accuracy on test images:")
