"""The time gate's detectable slowdown: the printed figure must be caught about 80% of the time."""

from __future__ import annotations

import math
import random

import pytest

from cifar_bench.results.stats import (
    judge_paired_slowdown,
    judge_slowdown,
    paired_slower_p_value,
    signed_rank_counts,
    slower_p_value,
    u_null_counts,
)
from cifar_bench.results.time_power import (
    SHAMOS,
    detectable_log_shift,
    detectable_paired_slowdown,
    detectable_slowdown,
    log_spread,
    mann_whitney_critical,
    signed_rank_critical,
)


def test_critical_values_are_the_smallest_significant_statistics():
    for n, m in [(3, 3), (4, 6), (5, 5), (8, 8), (3, 12)]:
        counts, total = u_null_counts(n, m), math.comb(n + m, n)
        u = mann_whitney_critical(n, m, 0.05)
        assert sum(counts[u:]) / total <= 0.05 * (1 + 1e-9) < sum(counts[u - 1 :]) / total
    for n in (5, 8, 20):
        counts, t = signed_rank_counts(n), signed_rank_critical(n, 0.05)
        assert sum(counts[t:]) / 2**n <= 0.05 < sum(counts[t - 1 :]) / 2**n
    assert mann_whitney_critical(2, 2, 0.05) is None and mann_whitney_critical(1, 30, 0.05) is None
    assert signed_rank_critical(4, 0.05) is None  # smallest p 1/16


def test_critical_u_of_the_normal_approximation_agrees_with_the_gates_p_value():
    n = m = 12  # beyond EXACT_MAX_RUNS: the gate uses the normal approximation
    u = mann_whitney_critical(n, m, 0.05)
    for target, significant in ((u, True), (u - 1, False)):
        # Current runs interleaved with baseline runs so that exactly `target` pairs have current above.
        baseline = [float(i) for i in range(1, m + 1)]
        current = [0.5] * n
        count = 0
        for j in range(n):
            above = min(m, target - count) if j == n - 1 else min(m, (target - count) // (n - j))
            current[j] = above + 0.5 + j * 1e-6  # above `above` baseline values, no ties
            count += above
        assert count == target
        assert (slower_p_value(baseline, current) <= 0.05) == significant


def test_spread_is_robust_and_ignores_the_shift_between_sides():
    rng = random.Random(1)
    baseline = [math.exp(rng.gauss(0, 0.05)) for _ in range(2000)]
    current = [1.3 * math.exp(rng.gauss(0, 0.05)) for _ in range(2000)]
    assert log_spread(baseline[:300], current[:300]) == pytest.approx(0.05, rel=0.08)
    noisy = [*baseline[:9], 5.0]  # one run slowed fivefold by a neighbour
    assert log_spread(noisy) < 1.5 * log_spread(baseline[:10])
    assert log_spread([1.0], [2.0]) is None
    assert round(SHAMOS, 4) == 1.0484


@pytest.mark.parametrize(("n", "max_slowdown"), [(5, 0.10), (5, 0.0), (8, 0.10), (12, 0.05)])
def test_the_printed_slowdown_is_caught_about_80_percent_of_the_time(n, max_slowdown):
    spread, trials = 0.06, 800
    printed = detectable_log_shift(spread, n, n, max_slowdown=max_slowdown)
    assert printed.method == "simulated"
    rng = random.Random(100 + n)  # not the module's draws
    caught = 0
    for _ in range(trials):
        baseline = [math.exp(rng.gauss(0, spread)) for _ in range(n)]
        current = [(1 + printed.slowdown) * math.exp(rng.gauss(0, spread)) for _ in range(n)]
        caught += judge_slowdown(baseline, current, max_slowdown=max_slowdown).regression
    assert 0.74 <= caught / trials <= 0.86, (printed, caught / trials)


@pytest.mark.parametrize("pairs", [6, 10])
def test_the_printed_paired_slowdown_is_caught_about_80_percent_of_the_time(pairs):
    spread, trials = 0.02, 800
    printed = detectable_log_shift(spread, pairs, 0, max_slowdown=0.05, paired=True)
    rng = random.Random(200 + pairs)
    caught = 0
    for _ in range(trials):
        ratios = [(1 + printed.slowdown) * math.exp(rng.gauss(0, spread)) for _ in range(pairs)]
        caught += judge_paired_slowdown(ratios, max_slowdown=0.05).regression
    assert 0.74 <= caught / trials <= 0.86, (printed, caught / trials)
    assert paired_slower_p_value([1.01] * pairs) < 0.05  # sanity: a constant slowdown is significant


def test_the_large_sample_formula_takes_over_where_the_simulation_stops():
    simulated = detectable_log_shift(0.05, 20, 20, max_slowdown=0.0)  # 400 pairs: the last simulated size
    formula = detectable_log_shift(0.05, 21, 20, max_slowdown=0.0)
    assert (simulated.method, formula.method) == ("simulated", "large-sample")
    assert formula.slowdown == pytest.approx(simulated.slowdown, rel=0.1)


def test_too_few_runs_cannot_detect_any_difference():
    assert detectable_slowdown([1.0, 1.1], [1.2, 1.3]).method == "cannot detect any difference"
    assert detectable_slowdown([1.0], [1.2]).slowdown is None
    assert detectable_paired_slowdown([1.01, 0.99, 1.02, 1.0]).slowdown is None  # 4 pairs: smallest p 1/16
    three = detectable_slowdown([1.0, 1.05, 0.97], [1.02, 1.01, 1.06])
    assert three.slowdown is not None and three.slowdown > 0.10  # beyond the threshold it must pass


def test_more_runs_or_less_noise_detect_smaller_slowdowns():
    spreads = [detectable_log_shift(s, 6, 6, max_slowdown=0.0).slowdown for s in (0.02, 0.05, 0.1)]
    assert spreads == sorted(spreads)
    counts = [detectable_log_shift(0.05, n, n, max_slowdown=0.0).slowdown for n in (3, 5, 10, 20)]
    assert counts == sorted(counts, reverse=True)
    assert detectable_log_shift(0.0, 5, 5, max_slowdown=0.10).slowdown == pytest.approx(0.10)  # no noise
