"""The pytest plugin: a plugin author's benchmarks behave as pytest-benchmark users expect."""

from __future__ import annotations

import json

import pytest

# Imported here, before any in-process pytester run: pytester removes the modules a run
# imported once it ends, and torch cannot be imported a second time into one process.
import cifar_bench.training.session  # noqa: F401  (imports torch)

pytest_plugins = ["pytester"]

# A plugin as an author would write it: a tiny model whose forward can be slowed from outside.
TINY_PLUGIN = """
import os
import time

import torch

from cifar_bench import Recipe, hookimpl


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 32 * 32, 10)

    def forward(self, x):
        delay = float(os.environ.get("TINY_DELAY_S", "0"))
        if delay:
            time.sleep(delay)
        return self.fc(x.flatten(1))


@hookimpl
def register_models(register):
    register("tiny", lambda hp: Tiny(), "one linear layer")


@hookimpl
def register_recipes(register):
    register(Recipe(name="tiny", model="tiny", loss="cross_entropy", optimizer="sgd", transform="tutorial",
                    dataset="synthetic", hyperparameters={"batch_size": 8, "epochs": 1, "lr": 0.01}))
"""

AUTHOR_TESTS = """
def test_step(benchmark_train_step):
    assert benchmark_train_step("tiny") > 0


def test_recipe(benchmark_recipe):
    record = benchmark_recipe("tiny", rounds=2, limit_train=40, limit_test=20)
    assert record.status == "ok" and record.recipe == "tiny"
"""

# Both plugins named explicitly, entry-point autoloading off: the same whether or not
# cifar-bench's pytest11 entry point is installed in this environment.
PLUGINS = ("-p", "pytest_benchmark.plugin", "-p", "cifar_bench.pytest_plugin", "-p", "no:cacheprovider")
QUICK = ("--benchmark-max-time=0.05", "--benchmark-min-rounds=3", "--benchmark-warmup=off")


@pytest.fixture
def author_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("TINY_DELAY_S", raising=False)
    # The author's session is their own, not a worker of this suite's parallel run: pytest-benchmark turns
    # itself off inside an xdist worker, and would save nothing.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makepyfile(tiny_plugin=TINY_PLUGIN, test_speed=AUTHOR_TESTS)
    pytester.makeini("[pytest]\ncifar_bench_plugins = tiny_plugin.py\n")
    return pytester


def test_autosave_then_compare_fail_catches_a_slower_step(author_project, monkeypatch):
    first = author_project.runpytest(*PLUGINS, *QUICK, "--benchmark-autosave")
    first.assert_outcomes(passed=2)
    (saved,) = author_project.path.glob(".benchmarks/*/0001_*.json")
    benchmarks = {b["name"]: b for b in json.loads(saved.read_text())["benchmarks"]}
    assert benchmarks["test_recipe"]["stats"]["rounds"] == 2
    assert benchmarks["test_recipe"]["extra_info"]["recipe"] == "tiny"
    assert len(benchmarks["test_recipe"]["extra_info"]["train_s"]) == 2
    assert benchmarks["test_step"]["extra_info"] == {"recipe": "tiny", "device": "cpu", "batch_size": 8}

    # A step that takes under a millisecond (up to ~50 ms on a busy shared CPU) now also sleeps 250 ms.
    monkeypatch.setenv("TINY_DELAY_S", "0.25")
    second = author_project.runpytest(
        *PLUGINS,
        *QUICK,
        "-k",
        "test_step",
        "--benchmark-compare=0001",
        "--benchmark-compare-fail=median:100%",
    )
    assert second.ret != 0
    output = pytest.LineMatcher(second.outlines + second.errlines)  # pytest-benchmark logs it to stderr
    output.fnmatch_lines(["*Performance has regressed*", "*test_step*median*"])


def test_the_plugin_fixture_can_be_overridden(author_project):
    author_project.makeini("[pytest]\n")  # no ini option: the conftest override must supply the plugin
    author_project.makeconftest(
        "import pytest\n\n@pytest.fixture\ndef cifar_bench_plugins():\n    return ['tiny_plugin.py']\n"
    )
    result = author_project.runpytest(*PLUGINS, *QUICK, "-k", "test_step", "--benchmark-disable")
    result.assert_outcomes(passed=1)


def test_an_unknown_recipe_fails_the_test_with_the_harness_message(author_project):
    author_project.makepyfile(test_typo="def test_typo(benchmark_train_step):\n    benchmark_train_step('tiyn')\n")
    result = author_project.runpytest(*PLUGINS, "test_typo.py", "--benchmark-disable")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*unknown recipe 'tiyn'*did you mean 'tiny'*"])
