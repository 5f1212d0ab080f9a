"""Phases, warm-up, repeats, variants, time to accuracy, and runs that end early."""

import json
import textwrap

import pytest
import torch

from cifar_bench.hooks import manager
from cifar_bench.hooks.registry import collect
from cifar_bench.results.variant import Variant
from cifar_bench.training import session as session_module
from cifar_bench.training import step as step_module
from cifar_bench.training.config import RunConfig
from cifar_bench.training.session import Session
from cifar_bench.training.step import TrainStep
from cifar_bench.training.timing import PhaseTimer
from cifar_bench.training.variants import unsupported_reason


def records(folder):
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def session():
    plugins = manager.build()
    return Session(plugins, collect(plugins))


SMALL = dict(dataset="synthetic", limit_train=200, limit_test=50, cache_dir=None)


def test_compilation_happens_in_warmup_never_in_train_or_eval(monkeypatch):
    """A stand-in for torch.compile notes the phase in which each new input shape is first seen."""
    current = []
    real_phase = PhaseTimer.phase

    def tracking_phase(self, name):
        current.append(name)
        return real_phase(self, name)

    first_seen = {}

    def fake_compile(model):
        def compiled(x):
            first_seen.setdefault((tuple(x.shape), model.training), current[-1])
            return model(x)

        wrapper = torch.nn.Module()
        wrapper.forward = compiled
        wrapper.inner = model
        return wrapper

    monkeypatch.setattr(PhaseTimer, "phase", tracking_phase)
    monkeypatch.setattr(step_module.torch, "compile", fake_compile)
    monkeypatch.setattr(session_module, "unsupported_reason", lambda variant, device: None)
    # 202 images in batches of 4 end with a batch of 2; 50 test images in batches of 16 end with 2.
    config = RunConfig("baseline", variant=Variant(compile=True), hyperparameters={"epochs": 2, "eval_batch_size": 16},
                       **{**SMALL, "limit_train": 202})  # fmt: skip
    record = session().run(config).record
    assert record.status == "ok", record.error
    assert record.compile is True
    assert set(first_seen.values()) == {"warmup"}, first_seen
    assert {shape for shape, training in first_seen if training} == {(4, 3, 32, 32), (2, 3, 32, 32)}
    assert {shape for shape, training in first_seen if not training} == {(16, 3, 32, 32), (2, 3, 32, 32)}
    assert record.timings.warmup_s > 0


def test_warm_up_leaves_weights_optimizer_and_random_streams_untouched():
    reg = collect(manager.build())
    hp = dict(reg.recipe("baseline").hyperparameters)
    torch.manual_seed(0)
    model = reg.get("model", "net").factory(hp)
    optimizer = reg.get("optimizer", "sgd").factory(model.parameters(), hp)
    gen = torch.Generator().manual_seed(3)
    step = TrainStep(model, torch.nn.CrossEntropyLoss(), optimizer, Variant(), torch.device("cpu"), None, gen)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng, gen_state = torch.get_rng_state(), gen.get_state()
    batch = (torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
    rng = torch.get_rng_state()
    step.warm_up([batch], [batch])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert optimizer.state_dict()["state"] == {}  # no momentum buffers left behind
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(gen.get_state(), gen_state)


def test_repeats_use_successive_seeds_and_the_table_shows_median_and_iqr(run_cli, tmp_path, smoke):
    result = run_cli("run", "baseline", *smoke, "--repeats", "3", "--seed", "5", "--results-dir", tmp_path)
    assert result.code == 0, result
    runs = records(tmp_path)
    assert sorted(r["seed"] for r in runs) == [5, 6, 7]
    assert len({r["run_id"] for r in runs}) == 3
    assert "median [IQR]" in result.out
    row = next(line for line in result.out.splitlines() if line.startswith("baseline ") and "tensor fp32" in line)
    assert " 3 " in row and "[" in row


def test_same_seed_same_losses_and_other_seed_other_losses():
    s = session()
    a = s.run(RunConfig("baseline", seed=1, **SMALL)).record
    b = s.run(RunConfig("baseline", seed=1, **SMALL)).record
    c = s.run(RunConfig("baseline", seed=2, **SMALL)).record
    assert a.metrics.epoch_loss == b.metrics.epoch_loss
    assert a.metrics.epoch_loss != c.metrics.epoch_loss


def test_precision_and_memory_format_are_recorded(run_cli, tmp_path, smoke):
    # bf16 convolutions are slow on CPUs without bf16 units: a handful of images is enough here.
    args = ("--limit-train", "40", "--limit-test", "20", "--precision", "bf16", "--channels-last")
    result = run_cli("run", "baseline", *smoke, *args, "--results-dir", tmp_path)
    assert result.code == 0, result
    (record,) = records(tmp_path)
    assert (record["precision"], record["channels_last"], record["compile"]) == ("bf16", True, False)
    assert record["loader"] == "tensor"


def test_a_variant_the_device_cannot_run_is_skipped_with_a_reason(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    reason = unsupported_reason(Variant(compile=True), torch.device("cpu"))
    assert "C++ compiler" in reason
    record = session().run(RunConfig("baseline", variant=Variant(compile=True), **SMALL)).record
    assert record.status == "skipped" and "C++ compiler" in record.error


def test_time_to_target_is_train_time_at_the_first_epoch_that_reaches_it():
    s = session()
    reached = s.run(RunConfig("baseline", target_acc=0.01, hyperparameters={"epochs": 3}, **SMALL)).record
    m = reached.metrics
    assert len(m.epoch_accuracy) == 3 and m.epoch_accuracy[0] >= 0.01
    assert m.time_to_target_s == pytest.approx(reached.timings.epoch_train_s[0])
    assert reached.timings.epoch_eval_s > 0  # evaluated after epochs 1 and 2, outside train time
    never = s.run(RunConfig("baseline", target_acc=1.0, hyperparameters={"epochs": 2}, **SMALL)).record
    assert never.metrics.time_to_target_s is None


def test_stop_at_target_stops_training(run_cli, tmp_path, smoke):
    args = ("--epochs", "4", "--target-acc", "0.01", "--stop-at-target")
    result = run_cli(
        "run", "baseline", *[a for a in smoke if a not in ("--epochs", "1")], *args, "--results-dir", tmp_path
    )
    assert result.code == 0, result
    (record,) = records(tmp_path)
    assert len(record["metrics"]["epoch_loss"]) == 1 and record["metrics"]["time_to_target_s"] is not None


def test_a_diverging_run_is_recorded_as_diverged_and_exits_1(run_cli, tmp_path, smoke):
    result = run_cli("run", "baseline", *smoke, "--set", "lr=1e30", "--results-dir", tmp_path)
    assert result.code == 1, result
    (record,) = records(tmp_path)
    assert record["status"] == "diverged" and "NaN or infinite" in record["error"]
    assert record["metrics"]["diverged_at"]["epoch"] == 1 and record["metrics"]["diverged_at"]["step"] >= 1


def write_plugin(tmp_path, body):
    path = tmp_path / "misbehaving.py"
    path.write_text("import torch\nfrom cifar_bench import hookimpl\n" + textwrap.dedent(body))
    return path


def test_a_run_that_fails_is_recorded_and_the_next_one_still_runs(run_cli, tmp_path, smoke):
    plugin = write_plugin(
        tmp_path,
        """
        class Exploding(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.w = torch.nn.Parameter(torch.zeros(1))

            def forward(self, x):
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

        @hookimpl
        def register_models(register):
            register("exploding", lambda hp: Exploding())
        """,
    )
    out = tmp_path / "r"
    result = run_cli("run", "baseline", *smoke, "-p", plugin, "--model", "exploding", "--repeats", "2",
                     "--results-dir", out)  # fmt: skip
    assert result.code == 1, result
    runs = records(out)
    assert [r["status"] for r in runs] == ["failed", "failed"]
    assert "out of memory" in runs[0]["error"]


def test_ctrl_c_records_an_interrupted_run_and_exits_130(run_cli, tmp_path, smoke):
    plugin = write_plugin(
        tmp_path,
        """
        @hookimpl
        def epoch_end(run, epoch):
            raise KeyboardInterrupt
        """,
    )
    out = tmp_path / "r"
    result = run_cli("run", "baseline", *smoke, "-p", plugin, "--repeats", "3", "--results-dir", out)
    assert result.code == 130, result
    (record,) = records(out)  # the later repeats never started
    assert record["status"] == "interrupted"
    assert len(record["metrics"]["epoch_loss"]) == 1  # what it measured before the interrupt is kept
    assert record["timings"]["train_s"] > 0


def test_reference_runs_are_interleaved_and_ratios_stored(run_cli, tmp_path, smoke):
    result = run_cli("run", "baseline", *smoke, "--repeats", "2", "--reference", "baseline", "--results-dir", tmp_path)
    assert result.code == 0, result
    runs = sorted(records(tmp_path), key=lambda r: r["run_id"])
    roles = sorted(r["role"] for r in runs)
    assert roles == ["candidate", "candidate", "reference", "reference"]
    by_id = {r["run_id"]: r for r in runs}
    for run in (r for r in runs if r["role"] == "candidate"):
        ref = by_id[run["reference"]["run_id"]]
        assert ref["role"] == "reference" and ref["seed"] == run["seed"]
        assert run["timings_ratio"]["train_s"] == pytest.approx(run["timings"]["train_s"] / ref["timings"]["train_s"])
