"""The third reliability round: each case an adversarial pass found, as it was reproduced, now answered.

1. Ctrl-C (or SIGTERM) after training never loses the run; 2. every observer sees the record written;
3. splits of two image sizes; 4. a forged cache; 5. a recipe name matplotlib reads as mathtext; 6. a typo in
a suite's ``set``; 7. a spurious thread warning; 8. start-up under --repeats; 9. a gate that failed open;
and the smaller ones: no empty results folder after a refusal, nothing left in the temporary folder by
torchrun.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from record_factory import record, write

from cifar_bench.results import store
from cifar_bench.results.store import read_record
from cifar_bench.training.data import load_tensors, read_image_folder


def records(folder: Path) -> list[dict]:
    return [read_record(p) for p in sorted(folder.glob("*.json"))]


def plugin(path: Path, hook: str, *body: str, imports: str = "") -> Path:
    """A plugin file implementing one lifecycle hook with ``body`` (one line each)."""
    lines = [imports, "from cifar_bench import hookimpl", "@hookimpl", f"def {hook}:", *(f"    {b}" for b in body)]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- 1, 2: the end of a run ------------------------------------------------------------------------------


def test_ctrl_c_while_plugins_are_told_of_a_finished_run_still_writes_its_record(run_cli, tmp_path, smoke):
    plugin = tmp_path / "slow_end.py"
    plugin.write_text(
        "from cifar_bench import hookimpl\n@hookimpl\ndef run_end(run, record):\n    raise KeyboardInterrupt\n"
    )
    result = run_cli("run", "baseline", *smoke, "-p", plugin, "--results-dir", tmp_path / "r")
    assert result.code == 130, result
    (written,) = records(tmp_path / "r")
    assert written["status"] == "interrupted" and written["metrics"]["test_accuracy"] is not None
    assert "after the run ended, while plugins were told of it" in written["error"]


def test_ctrl_c_while_the_record_is_written_writes_it_again(run_cli, tmp_path, smoke, monkeypatch):
    real, calls = store.write_json_atomic, []

    def stopped_once(path, data):
        calls.append(path)
        if len(calls) == 1:
            raise KeyboardInterrupt  # as write_json_atomic re-raises it after removing its temporary file
        return real(path, data)

    monkeypatch.setattr(store, "write_json_atomic", stopped_once)
    result = run_cli("run", "baseline", *smoke, "--results-dir", tmp_path / "r")
    assert result.code == 130, result
    (written,) = records(tmp_path / "r")
    assert written["status"] == "interrupted" and "while its record was written" in written["error"]


def test_sigterm_during_a_slow_run_end_of_a_real_process_still_writes_the_record(tmp_path):
    marker = tmp_path / "told"
    slow = plugin(tmp_path / "slow_end.py", "run_end(run, record)", f"Path({str(marker)!r}).write_text('x')",
                  "time.sleep(60)", imports="import time\nfrom pathlib import Path")  # fmt: skip
    args = [sys.executable, "-m", "cifar_bench", "run", "baseline", "--dataset", "synthetic", "--limit-train", "40",
            "--limit-test", "20", "--epochs", "1", "--quiet", "-p", str(slow),
            "--results-dir", str(tmp_path / "r")]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    (written,) = records(tmp_path / "r")
    assert written["status"] == "interrupted" and written["error"].startswith("terminated (SIGTERM) after the run")


def test_every_observer_is_handed_the_record_that_is_written(run_cli, tmp_path, smoke):
    seen = tmp_path / "seen.json"
    keeper = tmp_path / "keeper.py"
    keeper.write_text(
        "import json\nfrom cifar_bench import hookimpl\n"
        f"@hookimpl\ndef run_end(run, record):\n    open({str(seen)!r}, 'w').write(json.dumps(record.to_dict()))\n"
    )
    breaker = tmp_path / "breaker.py"
    breaker.write_text(
        "from cifar_bench import hookimpl\n@hookimpl\ndef run_end(run, record):\n    raise KeyError('x')\n"
    )
    for order in ((keeper, breaker), (breaker, keeper)):  # whichever is told first
        folder = tmp_path / f"r-{order[0].stem}"
        result = run_cli("run", "baseline", *smoke, "-p", order[0], "-p", order[1], "--results-dir", folder)
        assert result.code == 1 and "plugin 'breaker' failed in run_end" in result.err, result
        (written,) = folder.glob("*.json")
        assert json.loads(written.read_text()) == json.loads(seen.read_text())  # what the keeper saw, exactly


# -- 3, 4: data ------------------------------------------------------------------------------------------


def test_test_images_of_another_size_than_the_training_images_are_bad_input(run_cli, tmp_path):
    rng = np.random.default_rng(0)
    for split, side in (("train", 32), ("test", 64)):
        for name in ("cat", "dog"):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    result = run_cli("run", "baseline", "--data-dir", tmp_path / "data", "--epochs", "1", "--quiet",
                     "--results-dir", tmp_path / "r")  # fmt: skip
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result
    assert "the test images are 64x64" in result.err and "train images 32x32" in result.err


def test_a_forged_cache_of_the_right_name_and_counts_but_another_image_size_is_rebuilt(
    run_cli, image_folder, tmp_path, smoke, capsys
):
    cache = tmp_path / "cache"
    dataset = read_image_folder(image_folder)
    train, test, _ = load_tensors(dataset, cache)
    (path,) = cache.glob("*.pt")
    blob = torch.load(path, weights_only=True)
    blob["train_images"] = torch.zeros((len(train), 3, 8, 8), dtype=torch.uint8)  # right count, 8x8 images
    blob["test_images"] = torch.zeros((len(test), 3, 8, 8), dtype=torch.uint8)
    torch.save(blob, path)
    capsys.readouterr()
    args = ("run", "baseline", "--data-dir", image_folder, "--cache-dir", cache, "--epochs", "1", "--quiet",
            "--no-cpu-tune")  # fmt: skip
    result = run_cli(*args, "--results-dir", tmp_path / "r")
    assert result.code == 0, result
    assert "ignoring data cache" in result.err and "8, 8" in result.err and "rebuilding" in result.err
    assert torch.load(path, weights_only=True)["train_images"].shape[2:] == (32, 32)  # rebuilt, once
    assert "ignoring data cache" not in run_cli(*args, "--results-dir", tmp_path / "r2").err  # trusted from then on


# -- 5, 6, 7, 8, 9 ----------------------------------------------------------------------------------------


def test_a_recipe_name_matplotlib_reads_as_mathtext_is_drawn_as_written(run_cli, tmp_path):
    write(tmp_path / "r", record(recipe="$\\nosuchsymbol$"), record(recipe="$\\nosuchsymbol$", train_s=11.0))
    result = run_cli("plot", tmp_path / "r", "--output", tmp_path / "chart.png")
    assert result.code == 0 and (tmp_path / "chart.png").stat().st_size > 0, result


def test_a_typo_in_a_suites_set_is_refused_before_any_run(run_cli, tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(
        '[defaults]\ndataset = "synthetic"\nepochs = 1\n\n[[runs]]\nrecipes = "baseline"\nset = { lrr = 0.01 }\n'
    )
    for extra in (("--dry-run",), ()):
        result = run_cli("suite", suite, "--results-dir", tmp_path / "r", *extra)
        assert result.code == 2 and "did you mean 'lr'?" in result.err and len(result.err.splitlines()) == 1, result
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").glob("*.json"))


def test_records_without_an_environment_raise_no_thread_warning(run_cli, tmp_path):
    base = [record(train_s=10.0 + i / 10) for i in range(3)]
    current = [record(train_s=10.0 + i / 10) for i in range(3)]
    del current[0]["environment"]  # the column of threads now has a gap: pandas reads it as floats
    result = run_cli("compare", write(tmp_path / "b", *base), write(tmp_path / "c", *current))
    assert result.code == 0, result
    assert "different threads" not in result.out + result.err


def test_startup_is_the_same_for_every_repeat(run_cli, tmp_path, smoke):
    result = run_cli("run", "baseline", *smoke, "--repeats", "3", "--results-dir", tmp_path)
    assert result.code == 0, result
    startups = {r["timings"]["startup_s"] for r in records(tmp_path)}
    assert len(records(tmp_path)) == 3 and len(startups) == 1


def test_a_gate_that_did_not_judge_the_recipe_under_test_fails_closed(run_cli, tmp_path):
    reference = [record(train_s=10.0 + i / 10) for i in range(3)]
    base = [record("mine", train_s=10.0 + i / 10, hyperparameters={"epochs": 2, "batch_size": 4}) for i in range(3)]
    pr = [record("mine", train_s=10.0 + i / 10, hyperparameters={"epochs": 3, "batch_size": 4}) for i in range(3)]
    args = (write(tmp_path / "b", *reference, *base), write(tmp_path / "c", *reference, *pr))
    result = run_cli("compare", *args)
    assert result.code == 2 and result.err.startswith("cifar-bench: error: not judged: mine / cpu"), result
    assert "epochs: 2 vs 3" in result.err and "baseline" in result.out  # the judged pair is still shown
    assert run_cli("compare", *args, "--allow-unjudged").code == 0


# -- the smaller ones ----------------------------------------------------------------------------------------


def test_a_refused_run_leaves_no_empty_results_folder(run_cli, tmp_path, smoke):
    result = run_cli("run", "baseline", *smoke, "--set", "lrr=0.01", "--results-dir", tmp_path / "new")
    assert result.code == 2 and "did you mean 'lr'?" in result.err, result
    assert not (tmp_path / "new").exists()


def test_ctrl_c_during_the_final_evaluation_records_the_finished_training(run_cli, tmp_path, smoke, monkeypatch):
    from cifar_bench.training import loop

    def stopped(run, parts):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_evaluate", stopped)
    result = run_cli("run", "baseline", *smoke, "--results-dir", tmp_path / "r")
    assert result.code == 130, result
    (written,) = records(tmp_path / "r")
    assert written["status"] == "interrupted" and written["error"] == "interrupted (Ctrl-C) after training"
    assert len(written["metrics"]["epoch_loss"]) == 1  # what training measured is kept
