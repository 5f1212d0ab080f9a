"""Accuracy across seeds through the command line: compare's verdicts, --target-acc, --detect, report's columns.

The issue's "done when" scenarios on synthetic records: each side's
accuracies are a mean plus a fixed pattern scaled to an exact SD, so every
verdict below is the same on every machine.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from pathlib import Path

import pytest
from record_factory import record, write
from scipy import stats as scipy_stats

from cifar_bench.commands.arguments import seed_list
from cifar_bench.commands.cli import main
from cifar_bench.results.accuracy_stats import judge_accuracy, seeds_needed

TIMES = [10.0, 10.2, 9.8, 10.1, 9.9, 10.05, 9.95, 10.15, 9.85, 10.0]  # the same on both sides: time holds


def spread(mean: float, sd: float, n: int) -> list[float]:
    """n accuracies (points) with exactly this mean and sample SD (a fixed, symmetric pattern)."""
    if n == 1:
        return [mean]
    pattern = [i - (n - 1) / 2 for i in range(n)]
    scale = sd / statistics.stdev(pattern)
    return [mean + scale * p for p in pattern]


def side(folder: Path, accuracies: list[float], **fields) -> Path:
    """One record per accuracy (points), seeds 0, 1, ...; train times from TIMES."""
    return write(folder, *(record(train_s=TIMES[i % len(TIMES)], accuracy=a / 100, seed=i, **fields)
                           for i, a in enumerate(accuracies)))  # fmt: skip


def compare_json(base: Path, cur: Path, *flags: str, capsys) -> tuple[int, dict]:
    code = main(["compare", str(base), str(cur), "--format", "json", *flags])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out else {})


def compare_text(base: Path, cur: Path, *flags: str, capsys) -> tuple[int, str]:
    code = main(["compare", str(base), str(cur), *flags])
    return code, capsys.readouterr().out


# -- the scenarios, at the defaults -----------------------------------------------------------------


def test_ten_seeds_two_points_lower_is_a_significant_regression(tmp_path, capsys):
    base = side(tmp_path / "a", spread(55.0, 0.5, 10))
    code, report = compare_json(base, side(tmp_path / "b", spread(53.0, 0.5, 10)), capsys=capsys)
    pair = report["pairs"][0]
    assert code == 1 and pair["verdict"] == "regression"
    accuracy = pair["accuracy"]
    assert accuracy["difference"] == pytest.approx(-2.0) and accuracy["verdict"] == "regression"
    assert accuracy["p_value"] < 1e-6 and accuracy["ci_high"] < -0.5
    assert any(r.startswith("accuracy -2.00 points") for r in pair["reasons"])


def test_ten_seeds_most_of_a_point_lower_and_quiet_is_a_regression_too(tmp_path, capsys):
    base = side(tmp_path / "a", spread(55.0, 0.3, 10))
    code, report = compare_json(base, side(tmp_path / "b", spread(54.2, 0.3, 10)), capsys=capsys)
    assert code == 1 and report["pairs"][0]["accuracy"]["verdict"] == "regression"


def test_three_noisy_seeds_a_little_lower_are_not_significant_and_say_what_they_could_see(tmp_path, capsys):
    baseline, current = spread(55.0, 1.0, 3), spread(54.7, 1.0, 3)
    code, out = compare_text(side(tmp_path / "a", baseline), side(tmp_path / "b", current), capsys=capsys)
    detectable = judge_accuracy(baseline, current).detectable
    assert code == 0 and "not significant" in out
    assert f"detectable: {detectable:.2f} pts" in out and detectable > 2  # 3 seeds a side see only big drops


def test_a_significant_gain_is_reported_as_an_improvement_and_passes(tmp_path, capsys):
    base = side(tmp_path / "a", spread(55.0, 0.5, 10))
    code, report = compare_json(base, side(tmp_path / "b", spread(56.5, 0.5, 10)), capsys=capsys)
    accuracy = report["pairs"][0]["accuracy"]
    assert code == 0 and accuracy["verdict"] == "improvement" and accuracy["improvement"]
    assert any("significant improvement" in r for r in report["pairs"][0]["reasons"])


def test_a_significant_drop_within_the_threshold_passes(tmp_path, capsys):
    base = side(tmp_path / "a", spread(55.0, 0.1, 10))
    code, report = compare_json(base, side(tmp_path / "b", spread(54.7, 0.1, 10)), capsys=capsys)
    assert code == 0 and report["pairs"][0]["accuracy"]["verdict"] == "drop within threshold"


@pytest.mark.parametrize(("drop", "code", "verdict"), [(3.0, 0, "too few seeds"), (6.0, 1, "regression")])
def test_one_run_a_side_counts_only_a_drop_beyond_the_single_run_threshold(tmp_path, capsys, drop, code, verdict):
    got, report = compare_json(side(tmp_path / "a", [55.0]), side(tmp_path / "b", [55.0 - drop]), capsys=capsys)
    accuracy = report["pairs"][0]["accuracy"]
    assert got == code and accuracy["verdict"] == verdict and accuracy["judged"] is False
    assert accuracy["max_drop"] == 5.0 and accuracy["p_value"] is None and accuracy["detectable"] is None


# -- what compare --format json holds -----------------------------------------------------------------------


def test_json_holds_accuracy_in_points_and_time_in_percent_each_with_its_detectable_size(tmp_path, capsys):
    baseline, current = spread(55.0, 0.8, 5), spread(54.5, 0.6, 5)
    base = side(tmp_path / "a", baseline)
    cur = write(tmp_path / "b", *(record(train_s=1.2 * t, accuracy=a / 100, seed=i)
                                  for i, (t, a) in enumerate(zip(TIMES, current, strict=False))))  # fmt: skip
    code, report = compare_json(base, cur, capsys=capsys)
    pair = report["pairs"][0]
    accuracy, time = pair["accuracy"], pair["time"]
    names = {"difference", "ci_low", "ci_high", "p_value", "n_baseline", "n_current", "detectable"}
    assert names <= set(accuracy) and names <= set(time)
    welch = scipy_stats.ttest_ind(current, baseline, equal_var=False, alternative="less")
    assert accuracy["difference"] == pytest.approx(-0.5) and accuracy["p_value"] == pytest.approx(welch.pvalue)
    two_sided = scipy_stats.ttest_ind(current, baseline, equal_var=False)
    low, high = two_sided.confidence_interval(confidence_level=0.90)  # 1 - 2 alpha: matches the one-sided test
    assert (accuracy["ci_low"], accuracy["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert (accuracy["n_baseline"], accuracy["n_current"]) == (5, 5)
    assert accuracy["detectable"] == pytest.approx(judge_accuracy(baseline, current).detectable)
    assert time["difference"] == pytest.approx(20.0) and time["p_value"] < 0.05  # 20% slower, in percent
    assert time["ci_low"] < 20 < time["ci_high"] and 10 < time["detectable"] < 100
    assert code == 1 and pair["verdict"] == "regression"  # 20% slower and significant


def test_every_verdict_prints_the_detectable_slowdown_beside_it(tmp_path, capsys):
    code, out = compare_text(side(tmp_path / "a", spread(55, 0.5, 5)), side(tmp_path / "b", spread(55, 0.5, 5)),
                             capsys=capsys)  # fmt: skip
    header = next(line for line in out.splitlines() if line.startswith("recipe") and "verdict" in line)
    row = next(line for line in out.splitlines() if line.startswith("baseline "))
    assert code == 0 and "detectable" in header
    assert row[header.index("detectable") :].split()[0].endswith("%")


def test_too_few_runs_to_detect_any_slowdown_say_so(tmp_path, capsys):
    code, report = compare_json(side(tmp_path / "a", [55.0, 55.2]), side(tmp_path / "b", [55.1, 55.0]),
                                capsys=capsys)  # fmt: skip
    time = report["pairs"][0]["time"]
    assert code == 0 and time["detectable"] is None and time["detectable_method"] == "cannot detect any difference"


# -- --target-acc and --detect --------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "reached"), [("0.54", True), ("54%", True), ("55.5%", False)])
def test_target_acc_tests_that_the_current_mean_reaches_it(tmp_path, capsys, target, reached):
    base, cur = side(tmp_path / "a", spread(55, 0.5, 10)), side(tmp_path / "b", spread(55, 0.5, 10))
    code, report = compare_json(base, cur, "--target-acc", target, capsys=capsys)
    result = report["pairs"][0]["accuracy"]["target"]
    assert code == 0 and result["reached"] is reached and result["target"] in (54.0, 55.5)
    assert result["p_value"] == pytest.approx(scipy_stats.ttest_1samp(spread(55, 0.5, 10), result["target"],
                                                                      alternative="greater").pvalue)  # fmt: skip


@pytest.mark.parametrize("bad", ["55", "0", "150%", "x"])
def test_a_target_that_is_neither_a_fraction_nor_a_percentage_is_refused(tmp_path, capsys, bad):
    base = side(tmp_path / "a", [55.0, 55.1])
    code = main(["compare", str(base), str(base), "--target-acc", bad])
    assert code == 2 and "fraction" in capsys.readouterr().err


def test_detect_prints_the_seeds_a_side_needed_for_that_drop(tmp_path, capsys):
    baseline, current = spread(55, 1.0, 5), spread(55, 1.0, 5)  # pooled SD exactly 1 point
    base, cur = side(tmp_path / "a", baseline), side(tmp_path / "b", current)
    code, out = compare_text(base, cur, "--detect", "1", capsys=capsys)
    needed = seeds_needed(1.0, 1.0, threshold=0.5)
    assert code == 0 and f"a 1-point drop needs {needed} seeds a side" in out
    code, report = compare_json(base, cur, "--detect", "0.5", capsys=capsys)
    seeds = report["pairs"][0]["accuracy"]["seeds_needed"]
    assert seeds["seeds_a_side"] is None and seeds["test_alone"] == seeds_needed(1.0, 0.5)  # never beyond 0.5
    code, out = compare_text(base, cur, "--detect", "0.5", capsys=capsys)
    assert "a 0.5-point drop is never a regression here" in out


# -- report ---------------------------------------------------------------------------------------------------


def test_report_json_rows_hold_mean_sd_n_and_the_95_percent_interval(tmp_path, capsys):
    values = [54.0, 55.5, 53.2, 56.1, 54.9, 55.0]
    code = main(["report", str(side(tmp_path / "a", values)), "--format", "json"])
    (row,) = json.loads(capsys.readouterr().out)
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=statistics.fmean(values),
                                       scale=statistics.stdev(values) / math.sqrt(len(values)))  # fmt: skip
    assert code == 0 and row["n"] == 6
    assert row["accuracy_mean"] == pytest.approx(statistics.fmean(values))
    assert row["accuracy_std"] == pytest.approx(statistics.stdev(values))
    assert (row["accuracy_ci_low"], row["accuracy_ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert "time_to_target_median" not in row  # no run aimed at a target


def test_report_text_shows_the_accuracy_columns_by_label(tmp_path, capsys):
    assert main(["report", str(side(tmp_path / "a", [54.0, 55.0, 56.0]))]) == 0
    out = capsys.readouterr().out
    assert "acc mean %" in out and "acc 95% CI low" in out and "accuracy_mean" not in out


def target_run(seconds: float | None, i: int) -> dict:
    run = record(accuracy=0.55, seed=i)
    run["metrics"].update(target_acc=0.5, time_to_target_s=seconds)
    return run


def test_report_summarises_time_to_target_as_a_median_and_an_olympic_mean(tmp_path, capsys):
    seconds = [8.0, 9.0, 10.0, 11.0, 30.0, None]  # one run never reached the target: infinitely slow
    folder = write(tmp_path / "a", *(target_run(s, i) for i, s in enumerate(seconds)))
    assert main(["report", str(folder), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["target_acc"] == pytest.approx(50) and row["target_reached"] == 5
    assert row["time_to_target_median"] == pytest.approx(10.5)  # of 8, 9, 10, 11, 30, inf
    assert row["time_to_target_olympic"] == pytest.approx((9 + 10 + 11 + 30) / 4)  # fastest and the miss dropped


def test_time_to_target_has_no_median_once_half_the_runs_missed_and_no_olympic_mean_below_five(tmp_path, capsys):
    folder = write(tmp_path / "a", *(target_run(s, i) for i, s in enumerate([8.0, None, None, 9.0])))
    assert main(["report", str(folder), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["target_reached"] == 2 and row["time_to_target_median"] is None
    assert row["time_to_target_olympic"] is None


# -- run --seeds ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seeds"), [("0-9", tuple(range(10))), ("0,2,5", (0, 2, 5)), ("7", (7,)),
                                             ("0-2, 10", (0, 1, 2, 10)), ("5-5", (5,))])  # fmt: skip
def test_seeds_are_ranges_and_lists(text, seeds):
    assert seed_list(text) == seeds


@pytest.mark.parametrize(("text", "needle"), [("9-0", "backwards"), ("1,2,1", "seed 1 is listed twice"),
                                              ("0-3,2", "seed 2 is listed twice"), ("a-b", "such as 0-9"),
                                              ("1,,2", "such as 0-9"), ("-3", "such as 0-9"),
                                              ("0-99999", "more than 10,000"),
                                              (str(2**63), "between 0 and 2**63-1")])  # fmt: skip
def test_bad_seed_lists_are_refused_with_what_is_wanted(text, needle):
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(needle)):
        seed_list(text)


@pytest.mark.parametrize("other", [("--repeats", "3"), ("--seed", "4"), ("--repeats", "1")])
def test_seeds_with_repeats_or_seed_is_refused_before_anything_runs(run_cli, tmp_path, other):
    result = run_cli("run", "baseline", "--dataset", "synthetic", "--seeds", "0-2", *other, "--results-dir", tmp_path)
    assert result.code == 2 and f"drop {other[0]}" in result.err and len(result.err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.json"))


def test_run_with_seeds_runs_each_listed_seed_once(run_cli, tmp_path, smoke):
    result = run_cli("run", "baseline", *smoke, "--seeds", "3,5", "--results-dir", tmp_path)
    assert result.code == 0, result
    records = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert sorted(r["seed"] for r in records) == [3, 5]


# -- publish: the commit verdicts carry the same test -----------------------------------------------------------


def commit_runs(commit: str, day: int, accuracies: list[float]) -> list[dict]:
    runs = []
    for seed, accuracy in enumerate(accuracies):
        run = record(train_s=TIMES[seed], accuracy=accuracy / 100, seed=seed)
        run["environment"].update(git_commit=commit * 20)
        run["started_at"] = f"2026-01-0{day}T10:00:0{seed}+00:00"
        runs.append(run)
    return runs


def test_publish_shows_the_accuracy_test_beside_the_change_and_marks_only_a_significant_drop(tmp_path):
    runs = [*commit_runs("a1", 1, spread(55, 0.5, 5)), *commit_runs("b2", 2, spread(56.5, 0.5, 5)),
            *commit_runs("c3", 3, spread(54.0, 0.5, 5))]  # fmt: skip
    site = tmp_path / "site"
    assert main(["publish", str(write(tmp_path / "r", *runs)), "--output", str(site)]) == 0
    page = next((site / "workloads").glob("*.html")).read_text()
    assert "+1.50 pts acc (90% CI" in page and "-2.50 pts acc (90% CI" in page and "p=" in page
    assert page.count("REGRESSION") == 1  # the drop; the improvement before it is no regression
