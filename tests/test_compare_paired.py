"""compare on per-step-paired ratios (records made by ``cifar-bench ab``): the method, its test, its refusals."""

from __future__ import annotations

import json
import math

import pytest
from record_factory import record, write

from cifar_bench.commands.cli import main
from cifar_bench.results import stats

NOISY = [10.0, 14.0, 9.0, 13.0, 11.0]  # a shared runner: seconds wander by a third


def ab_sides(tmp_path, base_s, ratios, *, name="x"):
    """Baseline and current folders as 'ab' writes them: run k of each side names the other as partner."""
    base, cur = [], []
    for t, q in zip(base_s, ratios, strict=True):
        b, c = record(train_s=t), record(train_s=t * q)
        b["partner"], c["partner"] = {"side": "b", "run_id": c["run_id"]}, {"side": "a", "run_id": b["run_id"]}
        b["paired_ratio"] = {"step_median": 1 / q, "train_s": 1 / q, "steps": 249}
        c["paired_ratio"] = {"step_median": q, "train_s": q, "steps": 249}
        base.append(b)
        cur.append(c)
    return write(tmp_path / f"{name}-base", *base), write(tmp_path / f"{name}-cur", *cur)


def compare(capsys, *args):
    code = main(["compare", *map(str, args), "--format", "json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def test_paired_ratios_are_used_when_there_and_the_output_names_the_method(tmp_path, capsys):
    base, cur = ab_sides(tmp_path, NOISY, [1.0, 1.01, 0.99, 1.02, 0.98])
    code, report, _ = compare(capsys, base, cur)
    assert code == 0 and report["settings"]["paired"] is True
    assert report["settings"]["method"].startswith("paired:")
    assert report["pairs"][0]["decision"]["estimate"]["ratio"] == pytest.approx(1.0, abs=0.005)
    assert main(["compare", str(base), str(cur)]) == 0
    assert "Method: paired" in capsys.readouterr().out  # the text report says so too
    code, report, _ = compare(capsys, base, cur, "--no-paired")
    assert report["settings"]["method"].startswith("seconds:")


def test_paired_gating_catches_a_slowdown_that_seconds_on_a_noisy_runner_cannot(tmp_path, capsys):
    base, cur = ab_sides(tmp_path, NOISY, [1.15, 1.16, 1.14, 1.15, 1.17])
    code, report, _ = compare(capsys, base, cur)
    decision = report["pairs"][0]["decision"]
    assert code == 1 and decision["p_value"] == pytest.approx(1 / 32)  # 5 pairs, all slower: the smallest p
    assert decision["estimate"]["ratio"] == pytest.approx(1.15, abs=0.01)
    code, report, _ = compare(capsys, base, cur, "--no-paired")  # the same runs, in seconds
    assert code == 0 and report["pairs"][0]["decision"]["significant"] is False


def test_paired_gating_keeps_the_threshold(tmp_path, capsys):
    base, cur = ab_sides(tmp_path, NOISY, [1.05, 1.06, 1.04, 1.05, 1.07])  # certainly slower, but by 5%
    code, report, _ = compare(capsys, base, cur)
    assert code == 0 and report["pairs"][0]["verdict"] == "ok"
    code, _, _ = compare(capsys, base, cur, "--max-slowdown", "3")
    assert code == 1


def test_four_pairs_are_too_few_for_the_test_and_the_threshold_decides_alone(tmp_path, capsys):
    base, cur = ab_sides(tmp_path, NOISY[:4], [1.2, 1.2, 1.2, 1.2])
    code, report, _ = compare(capsys, base, cur)
    pair = report["pairs"][0]
    assert code == 1 and pair["decision"]["p_value"] is None
    assert "4 run pairs: too few to judge significance, threshold alone" in pair["reasons"]


def test_runs_whose_partner_is_not_in_baseline_are_left_out_and_counted(tmp_path, capsys):
    base, cur = ab_sides(tmp_path, NOISY, [1.0] * 5)
    stray = record(train_s=10.0, partner={"run_id": "elsewhere"}, paired_ratio={"step_median": 3.0})
    write(cur, stray)
    code, report, _ = compare(capsys, base, cur)
    pair = report["pairs"][0]
    assert code == 0 and pair["decision"]["current_runs"] == 5
    assert "1 current run(s) without train s left out" in pair["reasons"]


def test_paired_is_refused_without_ab_records_or_beside_ratio(tmp_path, capsys):
    plain_a = write(tmp_path / "pa", *(record(train_s=t) for t in NOISY))
    plain_b = write(tmp_path / "pb", *(record(train_s=t) for t in NOISY))
    code, report, _ = compare(capsys, plain_a, plain_b)
    assert code == 0 and report["settings"]["method"].startswith("seconds:")  # nothing paired: seconds
    code, _, err = compare(capsys, plain_a, plain_b, "--paired")
    assert code == 2 and "cifar-bench ab" in err and len(err.strip().splitlines()) == 1
    base, cur = ab_sides(tmp_path, NOISY, [1.0] * 5)
    code, _, err = compare(capsys, base, cur, "--paired", "--ratio")
    assert code == 2 and "--ratio" in err


def test_signed_rank_distribution_and_interval():
    assert stats.signed_rank_counts(3) == (1, 1, 1, 2, 1, 1, 1)  # sums of subsets of {1, 2, 3}
    assert sum(stats.signed_rank_counts(10)) == 2**10
    assert stats.can_judge_paired(5, 0.05) and not stats.can_judge_paired(4, 0.05)
    ratios = [1.1, 1.3, 0.9, 1.2, 1.0, 1.15, 1.05]
    estimate = stats.paired_ratio_estimate(ratios)
    assert estimate.low < estimate.ratio < estimate.high
    # The interval is the inversion of the one-sided test: it clears 1 exactly when p <= 0.05.
    for shifted in ([r * 1.3 for r in ratios], ratios):
        estimate = stats.paired_ratio_estimate(shifted)
        assert (estimate.low > 1) == (stats.paired_slower_p_value(shifted) <= 0.05)
    assert stats.paired_slower_p_value([1.0] * 5) == 1.0
    assert math.isclose(stats.paired_ratio_estimate([2.0, 0.5]).ratio, 1.0)
