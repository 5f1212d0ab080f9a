"""The gate's statistics: known samples must give known decisions."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from cifar_bench.results.stats import (
    can_judge,
    judge_slowdown,
    min_p_value,
    ratio_estimate,
    slower_p_value,
    u_null_counts,
)

BASE = [1.00, 1.02, 0.98, 1.01, 0.99]


def test_u_distribution_counts_every_rank_order_once():
    assert u_null_counts(2, 2) == (1, 1, 2, 1, 1)  # the textbook table for 2 against 2
    for n, m in [(1, 1), (3, 5), (6, 4), (7, 7)]:
        counts = u_null_counts(n, m)
        assert len(counts) == n * m + 1
        assert sum(counts) == math.comb(n + m, n)
        assert counts == counts[::-1]  # U and nm - U are equally likely


times = st.lists(st.floats(0.5, 2.0), min_size=2, max_size=7, unique=True)


@settings(max_examples=60, deadline=None)
@given(times, times)
def test_exact_distribution_agrees_with_scipy(baseline, current):
    if set(baseline) & set(current):
        return  # ties: scipy switches to the normal approximation
    u = sum(c > b for c in current for b in baseline)
    counts = u_null_counts(len(baseline), len(current))
    ours = sum(counts[u:]) / math.comb(len(baseline) + len(current), len(baseline))
    theirs = mannwhitneyu(current, baseline, alternative="greater", method="exact").pvalue
    assert ours == pytest.approx(theirs)


rounded = st.lists(st.sampled_from([0.9, 1.0, 1.1, 1.2, 1.3]), min_size=2, max_size=12)  # ties, often


@settings(max_examples=150, deadline=None)
@given(st.one_of(times, rounded), st.one_of(times, rounded, st.lists(st.floats(0.5, 2.0), min_size=9, max_size=14)))
def test_the_p_value_is_scipys_exact_or_tie_corrected_normal_one(baseline, current):
    theirs = mannwhitneyu(current, baseline, alternative="greater", method="auto").pvalue
    if math.isnan(theirs):  # every time equal: scipy has no answer, the gate sees no slowdown
        assert slower_p_value(baseline, current) == 1.0
    else:
        assert slower_p_value(baseline, current) == pytest.approx(theirs, rel=1e-9, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(times, times)
def test_interval_is_the_inverted_test(baseline, current):
    """The 90% interval lies above 1 exactly when the one-sided test is significant at 5%."""
    if set(baseline) & set(current) or not can_judge(len(baseline), len(current), 0.05):
        return
    decision = judge_slowdown(baseline, current, max_slowdown=0.0, alpha=0.05)
    assert decision.estimate.low is not None
    assert (decision.estimate.low > 1) == decision.significant


def test_ratio_of_a_scaled_sample_is_the_scale_and_inside_its_interval():
    estimate = ratio_estimate(BASE, [t * 1.2 for t in BASE])
    assert estimate.ratio == pytest.approx(1.2)
    assert estimate.low < 1.2 < estimate.high
    assert estimate.confidence == 0.90


def test_ratio_is_symmetric_between_the_sides():
    current = [1.3, 1.1, 1.25, 1.4]
    forward, backward = ratio_estimate(BASE, current), ratio_estimate(current, BASE)
    assert forward.ratio == pytest.approx(1 / backward.ratio)
    assert forward.low == pytest.approx(1 / backward.high)


def test_large_samples_use_the_normal_approximation_and_still_cover():
    rng = random.Random(0)
    baseline = [rng.lognormvariate(0, 0.05) for _ in range(60)]
    current = [rng.lognormvariate(math.log(1.15), 0.05) for _ in range(60)]
    estimate = ratio_estimate(baseline, current)  # 3600 pairs: beyond the exact limit
    assert estimate.low < 1.15 < estimate.high
    assert estimate.low > 1.1


def test_a_clear_15_percent_slowdown_is_a_regression():
    decision = judge_slowdown(BASE, [t * 1.15 for t in BASE])
    assert decision.judged and decision.significant and decision.slower and decision.regression
    assert decision.p_value == pytest.approx(1 / 252)  # 5 against 5, complete separation


def test_a_slowdown_under_the_threshold_is_not_a_regression_even_when_significant():
    decision = judge_slowdown(BASE, [t * 1.05 for t in BASE])
    assert decision.significant and not decision.slower and not decision.regression


def test_a_large_but_noisy_slowdown_is_not_significant():
    """One slow outlier moves the median pairwise ratio past 10% but not the ranks."""
    baseline = [1.0, 1.3, 0.9, 1.25, 0.95]
    current = [1.2, 0.92, 1.35, 1.28, 1.0]
    decision = judge_slowdown(baseline, current)
    assert decision.judged and not decision.significant and not decision.regression


def test_one_run_a_side_cannot_be_judged_and_the_threshold_decides():
    slow = judge_slowdown([1.0], [1.2])
    assert not slow.judged and slow.p_value is None and slow.significant is None
    assert slow.regression
    assert not judge_slowdown([1.0], [1.05]).regression


def test_which_sample_sizes_can_reach_significance():
    assert not can_judge(1, 20, 0.05)  # a single run is never judged
    assert not can_judge(2, 2, 0.05)  # best p is 1/6
    assert can_judge(3, 3, 0.05)  # best p is exactly 1/20
    assert not can_judge(3, 3, 0.01)
    assert min_p_value(5, 5) == pytest.approx(1 / 252)
    assert not judge_slowdown([1.0, 1.01], [2.0, 2.1]).judged


@pytest.mark.parametrize("bad", [[], [0.0, 1.0], [float("nan")], [-1.0]])
def test_times_must_be_positive_and_finite(bad):
    with pytest.raises(ValueError):
        ratio_estimate(bad, BASE)


pair_ratios = st.one_of(
    st.lists(st.floats(0.7, 1.4), min_size=1, max_size=20),
    st.lists(st.sampled_from([0.9, 1.0, 1.05, 1.1, 1.2]), min_size=1, max_size=20),  # ties and equal pairs
)


# 100 examples: scipy's own answer for 10-13 pairs with ties (every sign pattern, its permutation test) takes
# up to 2 s each, and 200 examples took a minute of the suite; ours takes milliseconds.
@settings(max_examples=100, deadline=None)
@given(pair_ratios)
def test_the_paired_p_value_is_scipys_wilcoxon(ratios):
    from scipy.stats import wilcoxon

    from cifar_bench.results.stats import paired_slower_p_value

    logs = [math.log(r) for r in ratios]
    if not any(logs):
        assert paired_slower_p_value(ratios) == 1.0  # every pair equal: scipy has no answer, the gate sees nothing
        return
    theirs = wilcoxon(logs, alternative="greater", method="auto").pvalue
    assert paired_slower_p_value(ratios) == pytest.approx(theirs, rel=1e-9, abs=1e-12)
