"""One ``test_hook_<name>`` per hook spec, each exercising its hook in a real (tiny, synthetic) run.

tests/test_meta.py fails when a hook spec has no test here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys

import pytest
import torch

from cifar_bench import Evaluation, EvaluationOutput, Recipe, Transform, hookimpl, main
from cifar_bench.hooks import manager
from cifar_bench.hooks.registry import collect
from cifar_bench.plugins.datasets import make_synthetic
from cifar_bench.results.schema import ComponentRef
from cifar_bench.training.config import RunConfig
from cifar_bench.training.session import Session

TRAIN, TEST, BATCH = 200, 50, 20  # images, images, images per step: 10 steps an epoch


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def run(cache_dir, results_dir):
    """Run a recipe with the built-in plugins plus ``probe`` (plugin 'probe'), then finish it as the CLI does."""

    def run_with(probe: object, recipe: str = "baseline", epochs: int = 1, **config):
        plugins = manager.build(autoload=False)  # no installed plugin takes part
        manager.register_inline(plugins, probe, "probe")
        session = Session(plugins, collect(plugins))
        config.setdefault("dataset", "synthetic")
        config.setdefault("limit_train", TRAIN)
        config.setdefault("limit_test", TEST)
        hp = {"epochs": epochs, "batch_size": BATCH, **config.pop("hyperparameters", {})}
        result = session.run(RunConfig(recipe=recipe, hyperparameters=hp, cache_dir=cache_dir, **config))
        assert result.record.status == "ok", result.record.error
        session.finish(result, results_dir)
        return result.record

    return run_with


class Timed:
    """A probe base: what its components saw once training started (the harness may warm up first)."""

    def __init__(self) -> None:
        self.seen: list = []

    @hookimpl
    def run_start(self, run):
        self.seen.clear()


# -- component hooks -------------------------------------------------------------------------


def test_hook_register_datasets(run):
    class Probe:
        @hookimpl
        def register_datasets(self, register):
            register("tiny", lambda source: dataclasses.replace(make_synthetic(100, 30, seed=3), name="tiny"))

    record = run(Probe(), dataset="tiny", limit_train=None, limit_test=None)
    assert record.components["dataset"] == ComponentRef("tiny", "probe")
    assert (record.dataset.name, record.dataset.train_size, record.dataset.test_size) == ("tiny", 100, 30)


def test_hook_register_transforms(run):
    class Probe(Timed):
        def augment(self, x, generator):
            self.seen.append(x.shape)
            return x.flip(3)

        @hookimpl
        def register_transforms(self, register):
            register("probe_transform", lambda hp: Transform(normalize=lambda x: x - 0.5, augment=self.augment))

    probe = Probe()
    record = run(probe, components={"transform": "probe_transform"})
    assert record.components["transform"] == ComponentRef("probe_transform", "probe")
    assert probe.seen == [(BATCH, 3, 32, 32)] * (TRAIN // BATCH)  # every training batch, never a test one


def test_hook_register_models(run):
    class Probe(Timed):
        @hookimpl
        def register_models(self, register):
            seen = self.seen

            class Counting(torch.nn.Module):
                def __init__(self, num_classes):
                    super().__init__()
                    self.fc = torch.nn.Linear(3 * 32 * 32, num_classes)

                def forward(self, x):
                    seen.append(("train" if self.training else "eval", len(x)))
                    return self.fc(x.flatten(1))

            register("counting", lambda hp: Counting(hp["num_classes"]))

    probe = Probe()
    record = run(probe, components={"model": "counting"})
    assert record.components["model"] == ComponentRef("counting", "probe")
    assert probe.seen == [("train", BATCH)] * (TRAIN // BATCH) + [("eval", TEST)]


def test_hook_register_losses(run):
    class Probe(Timed):
        @hookimpl
        def register_losses(self, register):
            seen = self.seen

            class Recording(torch.nn.Module):
                def forward(self, logits, labels):
                    seen.append((logits.shape, labels.shape))
                    return torch.nn.functional.cross_entropy(logits, labels)

            register("recording", lambda hp: Recording())

    probe = Probe()
    record = run(probe, components={"loss": "recording"})
    assert record.components["loss"] == ComponentRef("recording", "probe")
    assert probe.seen == [((BATCH, 10), (BATCH,))] * (TRAIN // BATCH)


def test_hook_register_optimizers(run):
    class Probe(Timed):
        @hookimpl
        def register_optimizers(self, register):
            seen = self.seen

            class CountingSGD(torch.optim.SGD):
                def step(self, closure=None):
                    seen.append(self.param_groups[0]["lr"])
                    return super().step(closure)

            register("counting_sgd", lambda params, hp: CountingSGD(params, lr=hp["lr"]))

    probe = Probe()
    record = run(probe, components={"optimizer": "counting_sgd"}, hyperparameters={"lr": 0.05})
    assert record.components["optimizer"] == ComponentRef("counting_sgd", "probe")
    assert probe.seen == [0.05] * (TRAIN // BATCH)


@pytest.mark.parametrize(("per", "expected_steps"), [("step", 2 * TRAIN // BATCH), ("epoch", 2)])
def test_hook_register_schedulers(run, per, expected_steps):
    ticks = []

    def factory(optimizer, hp, steps_per_epoch):
        assert steps_per_epoch == TRAIN // BATCH
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: ticks.append(t) or 1.0)

    class Probe:
        @hookimpl
        def register_schedulers(self, register):
            register("ticking", factory)

    record = run(Probe(), epochs=2, components={"scheduler": "ticking"}, hyperparameters={"schedule_per": per})
    assert record.components["scheduler"] == ComponentRef("ticking", "probe")
    assert ticks == list(range(expected_steps + 1))  # once when built, then once per step or epoch


def test_hook_register_recipes(run):
    class Probe:
        @hookimpl
        def register_recipes(self, register):
            register(
                Recipe(
                    name="probe_recipe",
                    model="net",
                    loss="label_smoothing_ce",  # a mix of components from two plugins
                    optimizer="adam",
                    transform="flip",
                    hyperparameters={"batch_size": 10, "epochs": 3, "lr": 0.002, "label_smoothing": 0.3},
                )
            )

    record = run(Probe(), recipe="probe_recipe")
    assert record.recipe == "probe_recipe"
    assert record.components["recipe"] == ComponentRef("probe_recipe", "probe")
    assert record.components["optimizer"] == ComponentRef("adam", "optimizers")
    hp = record.hyperparameters
    assert (hp["lr"], hp["label_smoothing"], hp["batch_size"], hp["epochs"]) == (0.002, 0.3, BATCH, 1)


def test_hook_register_evaluations(run):
    """An evaluation gets the trained model in eval mode and the run's test split, and its result is recorded."""

    class Probe:
        def __init__(self) -> None:
            self.seen: dict = {}

        def evaluate(self, data):
            logits = data.logits(data.images)
            self.seen.update(training=data.model.training, shape=tuple(data.images.shape), dtype=data.images.dtype,
                             indices=data.indices.tolist(), logits=tuple(logits.shape), seed=data.seed,
                             accuracy=data.test_accuracy, batch=data.hyperparameters["eval_batch_size"])  # fmt: skip
            agreed = (logits.argmax(1) == data.labels).double().mean().item()
            return EvaluationOutput(metrics={"accuracy": agreed}, tables={"t": {"row": {"col": 1}}}, details={"k": "v"})

        @hookimpl
        def register_evaluations(self, register):
            register(
                "probe_eval", lambda hp: Evaluation(self.evaluate, settings={"probe_size": hp.get("probe_size", 3)})
            )

    probe = Probe()
    record = run(probe, evaluations=("probe_eval",), hyperparameters={"probe_size": 5})
    assert probe.seen["training"] is False  # the harness put the model in eval mode
    assert (probe.seen["shape"], probe.seen["dtype"], probe.seen["logits"]) == (
        (TEST, 3, 32, 32),
        torch.uint8,
        (TEST, 10),
    )
    assert len(probe.seen["indices"]) == TEST and probe.seen["seed"] == 0 and probe.seen["batch"] == 1000
    result = record.evaluations["probe_eval"]
    assert (result.plugin, result.settings, result.details) == ("probe", {"probe_size": 5}, {"k": "v"})
    # The run's own accuracy, from the same model and images: logits() computes what the final evaluation did.
    assert result.metrics == {"accuracy": pytest.approx(record.metrics.test_accuracy)}
    assert probe.seen["accuracy"] == pytest.approx(record.metrics.test_accuracy)
    assert result.tables == {"t": {"row": {"col": 1.0}}}
    assert record.timings.evaluation_s == result.seconds > 0
    assert record.workload.evaluations == {"probe_eval": {"plugin": "probe", "settings": {"probe_size": 5}}}


# -- lifecycle hooks ---------------------------------------------------------------------------


class Observer:
    """Writes down every lifecycle event, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    @hookimpl
    def run_start(self, run):
        self.events.append(("run_start", run))

    @hookimpl
    def train_progress(self, run, progress):
        self.events.append(("train_progress", progress))

    @hookimpl
    def epoch_end(self, run, epoch):
        self.events.append(("epoch_end", epoch))

    @hookimpl
    def run_end(self, run, record):
        self.events.append(("run_end", record))

    def of(self, name: str) -> list:
        return [value for event, value in self.events if event == name]


@pytest.fixture(scope="module")
def observed(run):
    """One two-epoch run watched by an Observer: the lifecycle tests below each check their hook."""
    observer = Observer()
    record = run(observer, epochs=2, hyperparameters={"log_every": 4})
    return observer, record


def test_hook_run_start(observed):
    observer, record = observed
    (info,) = observer.of("run_start")
    assert observer.events[0] == ("run_start", info)  # before any training
    assert (info.recipe, info.dataset, info.device) == ("baseline", "synthetic", "cpu")
    assert (info.train_size, info.test_size, info.steps_per_epoch, info.epochs) == (TRAIN, TEST, 10, 2)
    assert info.run_id == record.run_id and info.hyperparameters["batch_size"] == BATCH


def test_hook_train_progress(observed):
    observer, _ = observed
    progress = observer.of("train_progress")
    assert [(p.epoch, p.step) for p in progress] == [(e, s) for e in (1, 2) for s in (4, 8, 10)]
    assert all(p.steps_per_epoch == 10 and p.images_seen == p.step * BATCH for p in progress)
    assert [p.log_loss is not None for p in progress] == [True, True, False] * 2  # log_every windows
    assert all(math.isfinite(p.running_loss) and p.elapsed_s > 0 for p in progress)


def test_hook_epoch_end(observed):
    observer, record = observed
    epochs = observer.of("epoch_end")
    assert [e.epoch for e in epochs] == [1, 2]
    assert [e.mean_loss for e in epochs] == record.metrics.epoch_loss
    assert [e.train_s for e in epochs] == record.timings.epoch_train_s
    assert all(e.images == TRAIN for e in epochs)
    names = [event for event, _ in observer.events]
    assert names[1:] == ["train_progress"] * 3 + ["epoch_end"] + ["train_progress"] * 3 + ["epoch_end", "run_end"]


def test_hook_run_end(observed, results_dir):
    observer, record = observed
    assert observer.events[-1] == ("run_end", record)  # last, with the finished record itself
    (finished,) = observer.of("run_end")
    assert finished is record and finished.metrics.test_accuracy is not None
    written = json.loads((results_dir / f"{record.run_id}.json").read_text())
    assert written == json.loads(json.dumps(finished.to_dict()))  # exactly what run_end saw


def test_hook_register_commands(tmp_path, capsys, monkeypatch):
    """A plugin's command is listed by --help beside the built-in ones, runs as they do, and can fail as they do."""
    monkeypatch.setenv(manager.AUTOLOAD_ENV, "1")
    plugin = tmp_path / "commands_plugin.py"
    plugin.write_text(
        "from cifar_bench import Command, UsageError, hookimpl\n"
        "def add(parser):\n"
        "    parser.add_argument('word')\n"
        "def echo(args):\n"
        "    if args.word == 'bad':\n"
        "        raise UsageError('bad word: say another')\n"
        "    print(args.word.upper())\n"
        "    return 3\n"
        "@hookimpl\n"
        "def register_commands(register):\n"
        "    register(Command('echo', 'say a word louder', add, echo))\n"
    )
    with pytest.raises(SystemExit):
        main(["-p", str(plugin), "--help"])
    listing = capsys.readouterr().out
    assert "echo" in listing and "say a word louder" in listing and "compare" in listing
    assert main(["-p", str(plugin), "echo", "hi"]) == 3
    assert capsys.readouterr().out.strip() == "HI"
    assert main(["-p", str(plugin), "echo", "bad"]) == 2
    assert capsys.readouterr().err.strip() == "cifar-bench: error: bad word: say another"
    assert main(["echo", "hi"]) == 2  # without the plugin there is no such command
    clash = tmp_path / "clash.py"
    clash.write_text(
        "from cifar_bench import Command, hookimpl\n"
        "@hookimpl\n"
        "def register_commands(register):\n"
        "    register(Command('report', 'mine', lambda parser: None, lambda args: 0))\n"
    )
    assert main(["-p", str(clash), "plugins"]) == 0  # the other commands still work
    assert "command 'report' is registered by both plugin 'commands' and plugin 'clash'" in capsys.readouterr().err


def test_hook_register_trackers(tmp_path, capsys, monkeypatch):
    """A plugin's tracker is listed, made once per command with its argument, told of the run, then closed."""
    monkeypatch.setenv(manager.AUTOLOAD_ENV, "1")
    plugin = tmp_path / "trackers_plugin.py"
    plugin.write_text(
        "from cifar_bench import hookimpl\n"
        "seen = []\n"
        "class Probe:\n"
        "    def __init__(self, argument):\n"
        "        seen.append(('made', argument))\n"
        "    def run_start(self, run):\n"
        "        seen.append(('run_start', run.run_id))\n"
        "    def run_end(self, run, record):\n"
        "        seen.append(('run_end', record.run_id, record.status))\n"
        "    def close(self):\n"
        "        seen.append(('close',))\n"
        "@hookimpl\n"
        "def register_trackers(register):\n"
        "    register('probe', Probe, 'writes down what it is told')\n"
    )
    assert main(["-p", str(plugin), "list"]) == 0
    assert "probe" in capsys.readouterr().out
    results = tmp_path / "results"
    argv = ["run", "baseline", "--dataset", "synthetic", "--limit-train", str(TRAIN), "--limit-test", str(TEST),
            "--epochs", "1", "--threads", "1", "--quiet", "--results-dir", str(results)]  # fmt: skip
    assert main(["-p", str(plugin), *argv, "--track", "probe=here"]) == 0
    (written,) = results.glob("*.json")
    run_id = json.loads(written.read_text())["run_id"]
    seen = sys.modules["cifar_bench_local_trackers_plugin"].seen
    assert seen == [("made", "here"), ("run_start", run_id), ("run_end", run_id, "ok"), ("close",)]
    assert main(["-p", str(plugin), *argv, "--track", "prob"]) == 2  # a name no plugin registers
    assert "unknown tracker 'prob': did you mean 'probe'?" in capsys.readouterr().err
