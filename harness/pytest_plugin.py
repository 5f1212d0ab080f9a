"""pytest fixtures for plugin authors: benchmark a recipe, or one train step, with pytest-benchmark.

Loaded through the ``pytest11`` entry point (or ``-p cifar_bench.pytest_plugin``).
Measurements go through pytest-benchmark's own ``benchmark`` fixture, so
everything its users expect works unchanged: ``--benchmark-autosave``,
``--benchmark-compare``, ``--benchmark-compare-fail=median:10%``, histograms.

Two fixtures::

    def test_my_recipe_speed(benchmark_recipe):
        record = benchmark_recipe("my_recipe", epochs=1, limit_train=500)
        assert record.metrics.test_accuracy > 0.1

    def test_my_model_step(benchmark_train_step):
        benchmark_train_step("my_recipe", batch_size=64)

Which cifar-bench plugins load: installed ones (entry points, as for the
CLI), plus any named with ``--cifar-bench-plugin SPEC`` or the
``cifar_bench_plugins`` ini option, or override the ``cifar_bench_plugins``
fixture to return a list of specs (``module.path`` or ``path/to/file.py``).

torch is imported only when a fixture is used, so merely having this plugin
installed does not slow down unrelated test suites.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .results.schema import RunRecord
    from .training.session import Session


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cifar-bench")
    group.addoption(
        "--cifar-bench-plugin",
        action="append",
        default=[],
        metavar="SPEC",
        help="load a cifar-bench plugin (module.path or path/to/file.py) for the benchmark fixtures",
    )
    parser.addini("cifar_bench_plugins", "cifar-bench plugins to load for the benchmark fixtures", type="linelist")


@pytest.fixture
def cifar_bench_plugins(request: pytest.FixtureRequest) -> list[str]:
    """Plugin specs to load besides the built-in and installed ones; override to choose your own."""
    return [*request.config.getini("cifar_bench_plugins"), *request.config.getoption("cifar_bench_plugin")]


@pytest.fixture
def cifar_bench_session(cifar_bench_plugins: list[str]) -> Session:
    """A harness session with the plugins loaded and their components registered."""
    from .training.session import Session

    return Session.load(cifar_bench_plugins)


@pytest.fixture
def benchmark_recipe(benchmark, cifar_bench_session: Session) -> Callable[..., RunRecord]:
    """Time whole runs of a recipe (setup, training, evaluation), one run per benchmark round.

    Call it once per test: ``benchmark_recipe(recipe, *, rounds=3, device="cpu",
    dataset="synthetic", limit_train=200, limit_test=100, epochs=1, seed=0,
    loader="tensor", **hyperparameters)``. A warm-up run decodes the data
    first, so every timed round does the same work. Returns the last
    round's :class:`~cifar_bench.RunRecord`, and fails the test if
    a run does not finish ``ok``. Training seconds and accuracy go into
    ``benchmark.extra_info``, which pytest-benchmark saves with the timings.
    """
    from .api import RunOptions
    from .execution.inprocess import InProcess

    def run(recipe: str, *, rounds: int = 3, device: str = "cpu", dataset: str | None = "synthetic",
            limit_train: int | None = 200, limit_test: int | None = 100, epochs: int | None = 1, seed: int = 0,
            loader: str = "tensor", components: dict[str, str] | None = None,
            **hyperparameters: Any) -> RunRecord:  # fmt: skip
        # The run the same options of the Python API make (without the cache: every round decodes alike).
        options = RunOptions(device=device, seed=seed, dataset=dataset, limit_train=limit_train, epochs=epochs,
                             limit_test=limit_test, loader=loader, set=hyperparameters, no_cache=True,
                             **(components or {}))  # fmt: skip
        (planned,) = options.request(recipe).plan().runs
        records: list[RunRecord] = []

        def once() -> None:
            (result,) = InProcess(cifar_bench_session).run_one(planned)
            record = result.record
            if record.status != "ok":
                pytest.fail(f"{recipe} on {device} ended {record.status}: {record.error}", pytrace=False)
            records.append(record)

        benchmark.pedantic(once, rounds=rounds, iterations=1, warmup_rounds=1)
        last = records[-1]
        benchmark.extra_info.update({
            "recipe": recipe,
            "device": device,
            "train_s": [r.timings.train_s for r in records[1:]],
            "test_accuracy": last.metrics.test_accuracy,
        })  # fmt: skip
        return last

    return run


@pytest.fixture
def benchmark_train_step(benchmark, cifar_bench_session: Session) -> Callable[..., float]:
    """Time one training step of a recipe's model, loss and optimizer on a fixed random batch.

    Call it once per test: ``benchmark_train_step(recipe, *, batch_size=None
    (the recipe's), device="cpu", input_shape=(3, 32, 32), num_classes=10,
    components=None, **hyperparameters)``. A step is what the harness's
    training loop does per batch: augment (if the recipe's transform has
    one), zero_grad, forward, loss, backward, optimizer step, then a wait
    for the device so that queued GPU work is counted. pytest-benchmark
    chooses the number of rounds. Returns the last step's loss.
    """
    from .training import devices

    def step_bench(recipe: str, *, batch_size: int | None = None, device: str = "cpu",
                   input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10,
                   components: dict[str, str] | None = None, seed: int = 0, **overrides: Any) -> float:  # fmt: skip
        reason = devices.unavailable_reason(device)
        if reason:
            pytest.skip(reason)
        if batch_size is not None:
            overrides["batch_size"] = batch_size
        step, batch, hp = _step_on_a_random_batch(cifar_bench_session, recipe, overrides, components or {}, device,
                                                  input_shape, num_classes, seed)  # fmt: skip
        loss = benchmark(lambda: step(*batch))
        benchmark.extra_info.update({"recipe": recipe, "device": device, "batch_size": hp["batch_size"]})
        return float(loss)

    return step_bench


def _step_on_a_random_batch(session: Session, recipe: str, overrides: dict[str, Any], components: dict[str, str],
                            device: str, input_shape: tuple[int, ...], num_classes: int, seed: int):  # fmt: skip
    """A recipe's training step (built as a run builds it, without its dataset), a fixed random batch for it, and
    the resolved hyperparameters. The step waits for the device, so that queued GPU work is counted."""
    import torch

    from .results.variant import Variant
    from .training import devices
    from .training.build import build
    from .training.config import RunConfig
    from .training.hyperparameters import resolve
    from .training.step import TrainStep

    spec = session.registry.recipe(recipe)
    hp = resolve(spec, overrides)
    hp.setdefault("num_classes", num_classes)
    entry = session.components(spec, RunConfig(recipe, components=components))  # a run's resolution and checks
    target = torch.device(device)
    torch.manual_seed(seed)
    transform = build(entry["transform"], hp)
    model = build(entry["model"], hp).to(target)
    loss_fn = build(entry["loss"], hp).to(target)
    optimizer = build(entry["optimizer"], model.parameters(), hp)
    generator = torch.Generator().manual_seed(seed)
    x = transform.normalize(torch.rand((hp["batch_size"], *input_shape), generator=generator).to(target))
    y = torch.randint(0, hp["num_classes"], (hp["batch_size"],), generator=generator).to(target)
    augment_rng = torch.Generator(device=target).manual_seed(seed)
    train_step = TrainStep(model, loss_fn, optimizer, Variant(), target, transform.augment, augment_rng)
    model.train()

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = train_step(x, y)
        devices.synchronize(target)
        return loss

    return step, (x, y), hp
