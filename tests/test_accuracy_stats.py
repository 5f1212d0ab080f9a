"""Accuracy across seeds: the t distribution, Welch's test, the gate's rule and its power, against scipy."""

from __future__ import annotations

import math
import random
import statistics
from statistics import NormalDist

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special
from scipy import stats as scipy_stats

from cifar_bench.results.accuracy_stats import (
    DEFAULT_MAX_DROP,
    detectable_difference,
    judge_accuracy,
    olympic_mean,
    power_at,
    reaches_target,
    seeds_needed,
    summarize,
    welch_test,
)
from cifar_bench.results.student_t import incomplete_beta, t_cdf, t_pdf, t_ppf, t_sf

DFS = [0.5, 1, 1.5, 2, 2.7, 3, 4.3, 5, 7.9, 10, 17.3, 30, 100, 1e3, 1e4, 1e5, 1e6]
TS = [-1e10, -1e5, -300, -40, -12, -5, -3, -2, -1.5, -1, -0.5, -0.1, -1e-5, 0, 1e-5, 0.3, 1, 2, 4, 9, 30]
PS = [1e-100, 1e-20, 1e-10, 1e-6, 1e-3, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.45, 0.55, 0.8, 0.9, 0.95, 0.99, 0.999]


def sample(mean: float, sd: float, n: int) -> list[float]:
    """n values with exactly this mean and sample SD, shaped like a normal sample (evenly spaced normal scores)."""
    scores = [NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)]
    centre, spread = statistics.fmean(scores), statistics.stdev(scores)
    return [mean + sd * (z - centre) / spread for z in scores]


def close(a: float, b: float, rel: float = 1e-10) -> bool:
    return abs(a - b) <= rel * abs(b)


# -- Student's t ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("df", DFS)
def test_t_cdf_matches_scipy_to_1e_10_tails_included(df):
    for t in TS:
        expected = scipy_stats.t.cdf(t, df)
        if expected > 1e-300:
            assert close(t_cdf(t, df), expected), (t, df)
            assert close(t_sf(-t, df), expected), (t, df)


@pytest.mark.parametrize("df", DFS)
def test_t_quantiles_match_scipy_to_1e_10(df):
    for p in PS:
        expected = scipy_stats.t.ppf(p, df)
        if abs(expected) < 1e150:  # scipy's own quantiles fail beyond (df 0.5 at 1e-100)
            assert close(t_ppf(p, df), expected), (p, df)


def test_t_density_and_edges():
    for df in (1, 3.5, 40, 1e5):
        for t in (-7, -1, 0, 0.5, 3):
            assert close(t_pdf(t, df), scipy_stats.t.pdf(t, df), 1e-12)
    assert t_cdf(-math.inf, 3) == 0 and t_cdf(math.inf, 3) == 1 and math.isnan(t_cdf(math.nan, 3))
    assert t_ppf(0, 3) == -math.inf and t_ppf(1, 3) == math.inf and t_ppf(0.5, 3) == 0
    assert close(t_cdf(-1.3, math.inf), NormalDist().cdf(-1.3), 1e-14)  # infinite df: the normal
    with pytest.raises(ValueError):
        t_cdf(1.0, 0)
    with pytest.raises(ValueError):
        t_ppf(1.5, 3)


def test_incomplete_beta_matches_scipy():
    for a, b in [(0.5, 0.5), (2, 3), (0.3, 7), (50, 0.5), (5e5, 0.5), (0.5, 1e4)]:
        for x in (1e-8, 0.01, 0.3, 0.5, 0.9, 0.999999):
            assert close(incomplete_beta(a, b, x), special.betainc(a, b, x), 1e-9), (a, b, x)


# -- summaries --------------------------------------------------------------------------------------------------


def test_summary_is_the_t_interval_of_the_mean():
    values = [53.75, 55.0, 56.15, 54.2, 55.6]
    s = summarize(values)
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=statistics.fmean(values),
                                       scale=scipy_stats.sem(values))  # fmt: skip
    assert (s.n, s.confidence) == (5, 0.95)
    assert close(s.mean, statistics.fmean(values)) and close(s.sd, statistics.stdev(values))
    assert close(s.ci_low, low) and close(s.ci_high, high)


def test_summary_of_one_value_has_no_spread_and_nan_is_refused():
    assert summarize([54.0]) == summarize([54.0])
    one = summarize([54.0])
    assert (one.n, one.mean, one.sd, one.ci_low, one.ci_high) == (1, 54.0, None, None, None)
    for bad in ([54.0, math.nan], [math.inf, 1.0], []):
        with pytest.raises(ValueError):
            summarize(bad)


def test_olympic_mean_drops_the_lowest_and_highest():
    assert olympic_mean([4, 1, 2, 3, 100]) == 3  # MLPerf: the mean of the middle three, the outlier gone
    assert olympic_mean([5, 5, 1, 9, 5, 5]) == 5
    assert olympic_mean([1, 2, 3, 4]) is None  # below 5 runs: not defined


# -- Welch's test -----------------------------------------------------------------------------------------------

samples = st.lists(st.floats(40, 60, allow_nan=False), min_size=2, max_size=12).filter(
    lambda v: statistics.pstdev(v) > 1e-6
)


@settings(max_examples=80, deadline=None)
@given(samples, samples)
def test_welch_matches_scipy_and_its_interval_matches_its_test(baseline, current):
    test = welch_test(baseline, current)
    drop = scipy_stats.ttest_ind(current, baseline, equal_var=False, alternative="less")
    gain = scipy_stats.ttest_ind(current, baseline, equal_var=False, alternative="greater")
    assert close(test.p_drop, drop.pvalue, 1e-8) and close(test.p_gain, gain.pvalue, 1e-8)
    assert close(test.df, drop.df, 1e-9)
    # The 90% two-sided interval is the one-sided 5% test turned round: below zero exactly when a drop is significant.
    assert test.confidence == pytest.approx(0.9)
    assert (test.ci_high < 0) == (test.p_drop < 0.05)
    assert (test.ci_low > 0) == (test.p_gain < 0.05)


def test_one_run_on_one_side_borrows_the_other_sides_spread():
    baseline, current = [55.1, 54.3, 56.0, 55.4], [53.0]
    test = welch_test(baseline, current)
    pooled = scipy_stats.ttest_ind(current, baseline, equal_var=True, alternative="less")
    assert test.method == "pooled" and test.df == 3
    assert close(test.p_drop, pooled.pvalue, 1e-9)


def test_one_run_a_side_measures_no_noise_and_the_threshold_decides_alone():
    test = welch_test([55.0], [54.0])
    assert test.method == "none" and test.difference == -1.0
    assert (test.p_drop, test.ci_low, test.df, test.detectable) == (None, None, None, None)
    # One run against one differs by ~2.4 points (SD) at the baseline's spread: 0.5 points alone would flag a
    # third of identical pairs, so one run a side is judged against the single-run threshold (5 points).
    noise = judge_accuracy([55.0], [54.0])
    assert not noise.judged and not noise.regression and noise.verdict == "too few seeds" and noise.max_drop == 5.0
    big = judge_accuracy([55.0], [49.5])
    assert big.regression and big.verdict == "regression" and big.detectable is None
    raised = judge_accuracy([55.0], [49.5], max_drop=6.0)  # a larger max_drop is never lowered
    assert not raised.regression and raised.max_drop == 6.0


def test_no_spread_on_either_side_makes_the_difference_exact():
    test = welch_test([55.0, 55.0, 55.0], [54.0, 54.0])
    assert (test.se, test.p_drop, test.p_gain, test.ci_low, test.ci_high) == (0, 0.0, 1.0, -1.0, -1.0)
    assert test.detectable == 0 and test.df is None
    same = welch_test([55.0, 55.0], [55.0, 55.0])
    assert (same.p_drop, same.p_gain) == (1.0, 1.0)  # nothing changed: no evidence either way
    assert judge_accuracy([55.0, 55.0, 55.0], [54.0, 54.0]).regression
    assert not judge_accuracy([55.0, 55.0, 55.0], [54.8, 54.8]).regression  # exact, but within the threshold


def test_nan_accuracy_is_refused_not_averaged():
    with pytest.raises(ValueError, match="not finite"):
        welch_test([55.0, math.nan], [54.0, 54.5])


# -- the gate: the acceptance scenarios ------------------------------------------------------------------


def test_two_points_lower_over_ten_seeds_is_a_regression():
    verdict = judge_accuracy(sample(55.0, 0.5, 10), sample(53.0, 0.5, 10))
    assert verdict.regression and verdict.verdict == "regression"
    assert verdict.test.difference == pytest.approx(-2.0)


def test_most_of_a_point_lower_with_small_spread_is_a_regression_at_the_default_threshold():
    verdict = judge_accuracy(sample(55.0, 0.3, 10), sample(54.2, 0.3, 10))
    assert verdict.regression
    assert verdict.max_drop == DEFAULT_MAX_DROP < 0.8


def test_a_small_drop_over_three_noisy_seeds_is_not_significant_and_says_what_could_be():
    verdict = judge_accuracy(sample(55.0, 1.0, 3), sample(54.7, 1.0, 3))
    assert not verdict.regression and verdict.verdict == "not significant"
    assert verdict.test.p_drop > 0.05
    assert verdict.detectable > 0.3 and verdict.test.detectable > 0.3


def test_a_significant_gain_is_an_improvement_and_a_small_significant_drop_passes():
    assert judge_accuracy(sample(55.0, 0.3, 10), sample(56.0, 0.3, 10)).verdict == "improvement"
    within = judge_accuracy(sample(55.0, 0.1, 20), sample(54.8, 0.1, 20))
    assert within.verdict == "drop within threshold" and not within.regression


# -- power: what the printed detectable drop promises -------------------------------------------------------------


@pytest.mark.parametrize(("n", "threshold"), [(5, 0.0), (10, 0.0), (5, DEFAULT_MAX_DROP), (10, DEFAULT_MAX_DROP)])
def test_the_detectable_drop_is_caught_about_80_percent_of_the_time(n, threshold):
    sd, trials = 1.0, 1000
    drop = detectable_difference(sd, n, sd, n, threshold=threshold)
    rng = random.Random(n)
    caught = 0
    for _ in range(trials):
        baseline = [rng.gauss(55.0, sd) for _ in range(n)]
        current = [rng.gauss(55.0 - drop, sd) for _ in range(n)]
        caught += judge_accuracy(baseline, current, max_drop=threshold).regression
    assert 0.74 <= caught / trials <= 0.87, (drop, caught / trials)  # 1000 trials: the share's SD is 1.3%


def test_power_and_detectable_are_inverses_and_seeds_needed_uses_t_not_z():
    drop = detectable_difference(0.8, 7, 1.1, 9, threshold=0.5)
    assert power_at(drop, 0.8, 7, 1.1, 9, threshold=0.5) == pytest.approx(0.8)
    n = seeds_needed(1.0, 1.5)
    assert power_at(1.5, 1.0, n, 1.0, n) >= 0.8 > power_at(1.5, 1.0, n - 1, 1.0, n - 1)
    z = NormalDist().inv_cdf
    by_z = math.ceil(2 * ((z(0.95) + z(0.8)) * 1.0 / 1.5) ** 2)
    assert n > by_z  # the normal's answer is too few at small n
    assert seeds_needed(1.0, 0.5, threshold=0.5) is None  # a drop at the threshold is caught at most half the time
    assert seeds_needed(0.3, 0.6, threshold=0.5) > 2 * seeds_needed(0.3, 0.6)  # near the threshold, it dominates


# -- reaching a target ---------------------------------------------------------------------------------------------


def test_target_test_matches_scipys_one_sample_t_test():
    values = [94.02, 93.95, 94.21, 94.11, 93.99, 94.05, 94.17]
    result = reaches_target(values, 94.0)
    expected = scipy_stats.ttest_1samp(values, 94.0, alternative="greater").pvalue
    assert close(result.p_value, expected, 1e-9)
    assert result.reached == (expected <= 0.05)
    assert (result.lower_bound > 94.0) == result.reached
    assert reaches_target([95.0], 94.0).p_value is None
    assert reaches_target([95.0, 95.0], 94.0).reached and not reaches_target([93.0, 93.0], 94.0).reached
