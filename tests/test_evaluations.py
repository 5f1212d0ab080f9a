"""Evaluations after training (``run --evaluate``): choosing them, recording them, failing well, reading them back.

The built-in ``corruptions`` and ``calibration`` evaluations have their own tests (test_evaluations_builtin.py);
here a third-party evaluation from a plugin file stands for any of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from record_factory import record, write
from scipy import stats as scipy_stats

from cifar_bench import RunOptions, UsageError
from cifar_bench.hooks.evaluations import evaluation_names
from cifar_bench.results import workload
from cifar_bench.results.schema import EvaluationResult, RunRecord
from cifar_bench.training.config import RunConfig

PLUGIN = """
import torch
from cifar_bench import Evaluation, EvaluationOutput, Recipe, UsageError, hookimpl

def flipped(hp):
    size = hp.get("flip_images", 0)
    if not isinstance(size, int) or size < 0:
        raise UsageError(f"flip_images must be a whole number, got {size!r}")
    def evaluate(data):
        images = data.images[: size or None]
        predicted = data.logits(torch.flip(images, dims=[3])).argmax(dim=1)
        accuracy = (predicted == data.labels[: len(images)]).double().mean().item()
        return EvaluationOutput(metrics={"accuracy": accuracy}, tables={"by": {"all": {"n": len(images)}}},
                                details={"images": len(images)})
    return Evaluation(evaluate, settings={"images": size or "all"})

def broken(hp):
    def evaluate(data):
        raise RuntimeError("the probe broke")
    return Evaluation(evaluate)

def wrong(hp):
    return Evaluation(lambda data: {"accuracy": float("nan")})

@hookimpl
def register_evaluations(register):
    register("flipped", flipped, "accuracy on mirrored test images")
    register("broken", broken, "raises")
    register("wrong", wrong, "returns NaN")

@hookimpl
def register_recipes(register):
    register(Recipe(name="evaluated", model="net", loss="cross_entropy", optimizer="sgd", transform="tutorial",
                    hyperparameters={"batch_size": 20, "epochs": 1, "lr": 0.001}, evaluations=("flipped",)))
"""


@pytest.fixture
def plugin(tmp_path) -> Path:
    path = tmp_path / "flip_plugin.py"
    path.write_text(PLUGIN)
    return path


@pytest.fixture
def tiny(smoke) -> tuple[str, ...]:
    return (*smoke, "--batch-size", "20")


def records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def test_a_third_party_evaluation_is_recorded_and_reported(run_cli, plugin, tiny, tmp_path):
    results = tmp_path / "results"
    done = run_cli("run", "baseline", "-p", plugin, *tiny, "--evaluate", "flipped", "--results-dir", results)
    assert done.code == 0, done
    assert "evaluation flipped (" in done.out and "accuracy" in done.out  # printed after the run
    (made,) = records(results)
    result = made["evaluations"]["flipped"]
    assert result["plugin"] == "flip_plugin" and result["settings"] == {"images": "all"}
    assert 0 <= result["metrics"]["accuracy"] <= 1 and result["tables"] == {"by": {"all": {"n": 50.0}}}
    assert made["timings"]["evaluation_s"] == result["seconds"]
    report = run_cli("report", results)
    assert report.code == 0 and "flipped accuracy" in report.out and "flipped accuracy IQR" in report.out


def test_unknown_evaluation_names_are_exit_2_with_the_closest_one(run_cli, tiny):
    done = run_cli("run", "baseline", *tiny, "--evaluate", "calibraton")
    assert done.code == 2
    assert done.err.strip() == (
        "cifar-bench: error: unknown evaluation 'calibraton': did you mean 'calibration'? (see 'cifar-bench list')"
    )
    assert run_cli("run", "baseline", *tiny, "--evaluate", "calibration,calibration").code == 2
    assert run_cli("run", "baseline", *tiny, "--evaluate", "calibration,,corruptions").code == 2


def test_list_shows_evaluations(run_cli, plugin):
    listed = run_cli("-p", plugin, "list").out
    assert "evaluation  calibration" in listed and "evaluation  corruptions" in listed
    assert "evaluation  flipped             flip_plugin" in listed


def test_a_recipe_names_defaults_and_a_run_replaces_them(run_cli, plugin, smoke, tmp_path):
    assert run_cli("run", "evaluated", "-p", plugin, *smoke, "--results-dir", tmp_path / "a").code == 0
    assert list(records(tmp_path / "a")[0]["evaluations"]) == ["flipped"]
    assert (
        run_cli("run", "evaluated", "-p", plugin, *smoke, "--evaluate", "none", "--results-dir", tmp_path / "b").code
        == 0
    )
    assert records(tmp_path / "b")[0]["evaluations"] == {}
    done = run_cli(
        "run", "evaluated", "-p", plugin, *smoke, "--evaluate", "calibration", "--results-dir", tmp_path / "c"
    )
    assert done.code == 0 and list(records(tmp_path / "c")[0]["evaluations"]) == ["calibration"]


def test_settings_are_read_as_hyperparameters_and_checked_before_training(run_cli, plugin, tiny, tmp_path):
    done = run_cli("run", "baseline", "-p", plugin, *tiny, "--evaluate", "flipped", "--set", "flip_images=10",
                   "--results-dir", tmp_path)  # fmt: skip
    assert done.code == 0, done  # read by the evaluation's factory: not refused as a typo
    result = records(tmp_path)[0]["evaluations"]["flipped"]
    assert result["settings"] == {"images": 10} and result["details"] == {"images": 10}
    bad = run_cli("run", "baseline", "-p", plugin, *tiny, "--evaluate", "flipped", "--set", "flip_images=-1")
    assert bad.code == 2 and "flip_images must be a whole number" in bad.err and "epoch 1" not in bad.out
    unread = run_cli("run", "baseline", "-p", plugin, *tiny, "--set", "flip_images=10")  # no --evaluate flipped
    assert unread.code == 2 and "'flip_images' is read by no component" in unread.err


def test_a_failing_evaluation_fails_the_run_and_keeps_the_record(run_cli, plugin, tiny, tmp_path):
    done = run_cli("run", "baseline", "-p", plugin, *tiny, "--evaluate", "flipped,broken,calibration",
                   "--results-dir", tmp_path)  # fmt: skip
    assert done.code == 1
    assert "plugin 'flip_plugin': evaluation 'broken' failed: RuntimeError: the probe broke" in done.err
    (made,) = records(tmp_path)
    assert made["status"] == "failed" and "evaluation 'broken' failed" in made["error"]
    assert made["metrics"]["test_accuracy"] is not None  # what was measured before is kept
    assert made["evaluations"]["flipped"]["metrics"] and made["evaluations"]["broken"]["metrics"] == {}
    assert made["evaluations"]["calibration"]["metrics"] == {}  # never reached, yet named: the same workload
    wrong = run_cli("run", "baseline", "-p", plugin, *tiny, "--evaluate", "wrong", "--results-dir", tmp_path / "w")
    assert wrong.code == 1 and "evaluation 'wrong' returned a bad result: metric 'accuracy'" in wrong.err


def test_evaluations_are_part_of_the_workload(run_cli, plugin, tiny, tmp_path):
    base = record()
    assert "evaluations" not in workload.describe(base)  # a run without them keeps the key it always had
    evaluated = {**base, "evaluations": {"c": {"plugin": "p", "settings": {"images": 1000}, "metrics": {"m": 1.0}}}}
    other = {**base, "evaluations": {"c": {"plugin": "p", "settings": {"images": "all"}, "metrics": {"m": 1.0}}}}
    keys = {workload.key(workload.describe(r)) for r in (base, evaluated, other)}
    assert len(keys) == 3
    measured = {**evaluated, "evaluations": {"c": {**evaluated["evaluations"]["c"], "metrics": {"m": 0.5}}}}
    assert workload.describe(measured) == workload.describe(evaluated)  # what was measured is no part of it
    assert workload.differences(workload.describe(evaluated), workload.describe(other)) == [
        'evaluation c: p {"images": 1000} vs p {"images": "all"}'
    ]


def test_compare_shows_evaluation_differences_with_their_spread(run_cli, tmp_path):
    def made(value: float, seconds: float) -> dict:
        evaluations = {"calibration": {"plugin": "calibration", "settings": {"bins": 15},
                                       "metrics": {"ece": value, "nll": 1.0}}}  # fmt: skip
        return record(train_s=seconds, evaluations=evaluations)

    base = write(tmp_path / "base", made(0.10, 10.0), made(0.12, 10.1), made(0.11, 10.2))
    pr = write(tmp_path / "pr", made(0.05, 10.0), made(0.07, 10.1), made(0.06, 10.2))
    done = run_cli("compare", base, pr)
    assert done.code == 0, done
    assert "calibration ece" in done.out and "0.11 [0.01]" in done.out and "0.06 [0.01]" in done.out
    assert "-0.05" in done.out and "shown, not judged" in done.out
    as_json = json.loads(run_cli("compare", base, pr, "--format", "json").out)
    (ece,) = [c for c in as_json["evaluations"] if c["metric"] == "calibration.ece"]
    assert ece["difference"] == pytest.approx(-0.05) and (ece["baseline_runs"], ece["current_runs"]) == (3, 3)
    # Welch's test of the means, as compare's accuracy statistics (checked against scipy's), at alpha 0.05
    welch = scipy_stats.ttest_ind([0.05, 0.07, 0.06], [0.10, 0.12, 0.11], equal_var=False)
    assert ece["p_value"] == pytest.approx(welch.pvalue, rel=1e-6)
    half = scipy_stats.t.ppf(0.95, welch.df) * 0.05 / welch.statistic  # t = difference / se
    assert (ece["ci_low"], ece["ci_high"]) == pytest.approx((-0.05 + half, -0.05 - half), rel=1e-6)
    assert "p=0.0036" in done.out  # the text table shows it too


def test_a_reference_run_makes_no_evaluations(run_cli, tiny, tmp_path):
    done = run_cli("run", "baseline", *tiny, "--evaluate", "calibration", "--reference", "baseline",
                   "--results-dir", tmp_path)  # fmt: skip
    assert done.code == 0, done
    by_role = {r["role"]: r for r in records(tmp_path)}
    assert list(by_role["candidate"]["evaluations"]) == ["calibration"] and by_role["reference"]["evaluations"] == {}


def test_evaluations_are_refused_with_several_processes_before_any_rank_starts(monkeypatch):
    from cifar_bench.api import launch
    from cifar_bench.execution import torchrun

    def started(*args, **kwargs):
        raise AssertionError("torchrun started ranks only for each of them to refuse the run")

    monkeypatch.setattr(torchrun, "launch", started)
    with pytest.raises(UsageError, match="evaluations run in one process"):
        launch("baseline", RunOptions(dataset="synthetic", nproc=2, evaluate="calibration"))


def test_a_suite_names_evaluations(run_cli, tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text('[defaults]\ndataset = "synthetic"\nlimit_train = 200\nlimit_test = 50\nepochs = 1\n'
                     '[[runs]]\nrecipes = "baseline"\nevaluate = "calibraton"\n')  # fmt: skip
    done = run_cli("suite", suite, "--results-dir", tmp_path / "r")
    assert done.code == 2 and "unknown evaluation 'calibraton'" in done.err and str(suite) in done.err
    suite.write_text('[defaults]\ndataset = "synthetic"\n[[runs]]\nrecipes = "baseline"\nevaluate = "corruptions"\n'
                     'set = { corruption_images = 10 }\n')  # fmt: skip
    assert run_cli("suite", suite, "--dry-run", "--results-dir", tmp_path / "r").code == 0  # read by corruptions
    suite.write_text('[defaults]\ndataset = "synthetic"\n[[runs]]\nrecipes = "baseline"\n'
                     'set = { corruption_images = 10 }\n')  # fmt: skip
    unread = run_cli("suite", suite, "--dry-run", "--results-dir", tmp_path / "r")
    assert unread.code == 2 and "'corruption_images' is read by no component" in unread.err
    config = RunOptions(evaluate=["calibration", "corruptions"]).request("baseline").base
    assert config.evaluations == ("calibration", "corruptions")
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config  # as a rank receives it


@pytest.mark.parametrize(
    "value, names",
    [(None, None), ("none", ()), ("", ()), ("a, b", ("a", "b")), (["a"], ("a",)), ([], ())],
)
def test_evaluation_names(value, names):
    assert evaluation_names(value) == names


@pytest.mark.parametrize("value", ["a,a", "a,", "a,none", 3, ["a", 2]])
def test_bad_evaluation_names(value):
    with pytest.raises(UsageError):
        evaluation_names(value)


def test_records_without_evaluations_still_read(tmp_path):
    old = record()
    del old["evaluations"]
    back = RunRecord.from_dict(old)
    assert back.evaluations == {} and back.timings.evaluation_s == 0.0
    made = RunRecord.from_dict({**record(), "evaluations": {"x": {"plugin": "p", "metrics": {"m": 0.5}}}})
    assert made.evaluations == {"x": EvaluationResult(plugin="p", metrics={"m": 0.5})}


def evaluated_record(ece: float, commit: str = "a" * 40) -> dict:
    """A record with the built-in evaluations' results, as a run with --evaluate corruptions,calibration writes."""
    bins = [{"lower": b / 15, "upper": (b + 1) / 15, "images": 10 if b > 5 else 0,
             "confidence": (b + 0.5) / 15 if b > 5 else None, "accuracy": b / 16 if b > 5 else None}
            for b in range(15)]  # fmt: skip
    per_severity = {str(s): 0.52 - 0.02 * s for s in range(1, 6)}
    made = record(evaluations={
        "calibration": {"plugin": "calibration", "settings": {"bins": 15},
                        "metrics": {"ece": ece, "nll": 1.3, "brier": 0.6}, "details": {"bins": bins}},
        "corruptions": {"plugin": "corruptions", "settings": {"images": 1000},
                        "metrics": {"mean_accuracy": 0.47, "relative_drop": 0.09},
                        "details": {"clean_accuracy": 0.52, "per_severity": per_severity}},
        "flipped": {"plugin": "flip_plugin", "metrics": {"accuracy": 0.5}},
    })  # fmt: skip
    made["environment"]["git_commit"] = commit
    return made


def test_plot_draws_a_second_row_for_evaluations(tmp_path):
    from cifar_bench.results.plot import draw
    from cifar_bench.results.reader import load_runs

    runs = load_runs([write(tmp_path / "r", evaluated_record(0.02), evaluated_record(0.03))]).runs
    axes = draw(runs).axes
    titles = [ax.get_title() for ax in axes]
    assert len(axes) == 6 and "reliability diagram (calibration, 15 equal-width bins)" in titles[3]
    assert "severity" in axes[4].get_xlabel() and "evaluation metrics" in titles[5]
    assert len(axes[3].get_lines()[1].get_xdata()) == 9  # the 9 bins with images, pooled over the two runs
    assert len(draw(load_runs([write(tmp_path / "plain", record())]).runs).axes) == 3  # none: one row, as before


def test_publish_charts_each_evaluation_metric(tmp_path):
    from cifar_bench.results.publish.site import publish

    results = write(tmp_path / "r", evaluated_record(0.02), evaluated_record(0.03, "b" * 40))
    publish([results], tmp_path / "site", report=lambda message: None)
    (page,) = (tmp_path / "site" / "workloads").glob("*.html")
    text = page.read_text()
    assert "Evaluations after training" in text and 'id="chart-calibration.ece"' in text
    assert "corruptions mean_accuracy median [IQR]" in text and "flipped accuracy" in text
