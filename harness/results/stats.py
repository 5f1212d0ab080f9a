"""The statistics behind ``cifar-bench compare``: is the current code really slower?

Two ideas, both rank-based so that one run slowed by a noisy neighbour
cannot swing the answer the way it swings a mean:

* **The size of the change** is the Hodges-Lehmann estimate of the time
  ratio: the median, over every (current, baseline) pair of runs, of
  ``current / baseline``. Its confidence interval is the matching
  distribution-free one: order statistics of those pairwise ratios, cut at
  the critical values of the exact Mann-Whitney U distribution. The interval
  is the inversion of the test below, so a 90% interval whose lower end is
  above 1 is the same statement as "one-sided test significant at 5%".
* **Whether it is real** is the one-sided Mann-Whitney U test (as asv
  uses): are the current times stochastically larger than the baseline's?

With too few runs the test cannot reach significance however large the
change (one run a side, or 2 against 2: the smallest possible p-value is
above ``alpha``); then the decision falls back on the threshold alone and
says so, rather than pretending to a confidence it does not have.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from statistics import NormalDist, median

#: Relative slack when comparing a probability with a level: 1 - 0.9 is not exactly 0.1 in
#: floating point, and 3 runs against 3 (best p exactly 1/20) must count at alpha 0.05.
SLACK = 1e-9

#: Above this many (current, baseline) pairs the exact U distribution is
#: replaced by its normal approximation (exact counting grows as n²m).
EXACT_LIMIT = 2500


@dataclass(frozen=True)
class RatioEstimate:
    """``current / baseline`` with a confidence interval (``None`` when too few runs allow none)."""

    ratio: float
    low: float | None
    high: float | None
    confidence: float


@dataclass(frozen=True)
class SlowdownDecision:
    """What the gate concluded about one pair of samples, and why."""

    estimate: RatioEstimate
    p_value: float | None  # one-sided Mann-Whitney U; None when significance could not be judged
    judged: bool  # False: too few runs for the test to ever be significant, threshold alone used
    slower: bool  # the estimated ratio exceeds 1 + max_slowdown
    regression: bool
    baseline_runs: int
    current_runs: int
    alpha: float

    @property
    def significant(self) -> bool | None:
        """True or False when the test was run; None when it could not be judged."""
        return None if self.p_value is None else is_significant(self.p_value, self.alpha)


@cache
def u_null_counts(n: int, m: int) -> tuple[int, ...]:
    """How many of the C(n+m, n) equally likely rank orders give U = 0, 1, ..., n*m.

    These are the coefficients of the Gaussian binomial [n+m choose n]_q,
    built one factor (1 - q^(m+i)) / (1 - q^i) at a time; every partial
    product is itself a polynomial, so the division is exact.
    """
    if n > m:
        n, m = m, n
    poly = [1]
    for i in range(1, n + 1):
        times = poly + [0] * (m + i)  # multiply by (1 - q^(m+i))
        for j in range(len(times) - 1, m + i - 1, -1):
            times[j] -= times[j - m - i]
        out = [0] * (i * m + 1)  # divide by (1 - q^i)
        for j in range(len(out)):
            out[j] = times[j] + (out[j - i] if j >= i else 0)
        poly = out
    return tuple(poly)


def min_p_value(n: int, m: int) -> float:
    """The smallest one-sided p-value an exact Mann-Whitney test of n against m runs can give."""
    return 1.0 / math.comb(n + m, n)


def _critical_rank(n: int, m: int, tail: float) -> int:
    """The largest k with P(U <= k - 1) <= tail under the null (0: no interval reaches it)."""
    if n * m > EXACT_LIMIT:
        mean, sd = n * m / 2, math.sqrt(n * m * (n + m + 1) / 12)
        return max(0, math.floor(mean + NormalDist().inv_cdf(tail) * sd + 0.5))
    return _lower_critical(u_null_counts(n, m), math.comb(n + m, n), tail)


def _lower_critical(counts: Sequence[int], total: int, tail: float) -> int:
    """The largest k with P(statistic <= k - 1) <= tail, from the null distribution's counts per value."""
    cumulative, k = 0, 0
    for value, count in enumerate(counts):
        cumulative += count
        if cumulative / total > tail * (1 + SLACK):
            break
        k = value + 1
    return k


def ratio_estimate(baseline: Sequence[float], current: Sequence[float], confidence: float = 0.90) -> RatioEstimate:
    """Hodges-Lehmann estimate and interval of ``current / baseline`` (times must be > 0).

    Worked on log times, so that the ratio is symmetric: twice as slow and
    twice as fast are equally far from 1.
    """
    _check(baseline, "baseline")
    _check(current, "current")
    diffs = sorted(math.log(c) - math.log(b) for c in current for b in baseline)
    ratio = math.exp(median(diffs))
    k = _critical_rank(len(baseline), len(current), (1 - confidence) / 2)
    if k < 1:
        return RatioEstimate(ratio, None, None, confidence)
    return RatioEstimate(ratio, math.exp(diffs[k - 1]), math.exp(diffs[len(diffs) - k]), confidence)


#: Runs a side up to which the exact U distribution is used (when there are no ties), as scipy's "auto" does.
EXACT_MAX_RUNS = 8


def slower_p_value(baseline: Sequence[float], current: Sequence[float]) -> float:
    """One-sided Mann-Whitney U p-value for "current takes longer than baseline".

    The exact distribution when either side has at most ``EXACT_MAX_RUNS``
    runs and no two times tie; otherwise the normal approximation with tie
    and continuity corrections. The same choices and numbers as scipy's
    ``mannwhitneyu(current, baseline, alternative="greater")`` (the tests
    check it), without importing scipy, which would triple the time a
    ``compare`` takes.
    """
    n, m = len(current), len(baseline)
    ranks = _average_ranks([*current, *baseline])
    u = sum(ranks[:n]) - n * (n + 1) / 2
    groups = Counter([*current, *baseline]).values()
    if min(n, m) <= EXACT_MAX_RUNS and all(size == 1 for size in groups):
        counts = u_null_counts(n, m)
        return sum(counts[round(u) :]) / math.comb(n + m, n)
    total = n + m
    tie_term = sum(size**3 - size for size in groups)
    spread = math.sqrt(n * m / 12 * ((total + 1) - tie_term / (total * (total - 1))))
    if spread == 0:
        return 1.0  # every time equal: nothing points to a slowdown
    return 1 - NormalDist().cdf((u - n * m / 2 - 0.5) / spread)


def _average_ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, tied values sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            ranks[i] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def can_judge(n: int, m: int, alpha: float) -> bool:
    """Whether n against m runs can ever be significant at ``alpha`` (never with one run a side)."""
    return min(n, m) >= 2 and min_p_value(n, m) <= alpha * (1 + SLACK)


def judge_slowdown(
    baseline: Sequence[float],
    current: Sequence[float],
    *,
    max_slowdown: float = 0.10,
    alpha: float = 0.05,
) -> SlowdownDecision:
    """A regression is a slowdown both larger than ``max_slowdown`` and significant at ``alpha``.

    Requiring both is what keeps the gate quiet on a shared runner: noise
    alone rarely makes every current run slower than every baseline run
    *and* by more than the threshold. When the sample sizes cannot support
    the test, the threshold decides alone (``judged`` is False).
    """
    estimate = ratio_estimate(baseline, current, confidence=1 - 2 * alpha)
    judged = can_judge(len(baseline), len(current), alpha)
    p_value = slower_p_value(baseline, current) if judged else None
    return _decision(estimate, p_value, judged, max_slowdown, alpha, len(baseline), len(current))


def _decision(estimate: RatioEstimate, p_value: float | None, judged: bool, max_slowdown: float, alpha: float,
              baseline_runs: int, current_runs: int) -> SlowdownDecision:  # fmt: skip
    """The rule both tests share: slower than the threshold, and significant where significance can be judged."""
    slower = estimate.ratio > 1 + max_slowdown
    return SlowdownDecision(
        estimate=estimate,
        p_value=p_value,
        judged=judged,
        slower=slower,
        regression=slower and (p_value is None or is_significant(p_value, alpha)),
        baseline_runs=baseline_runs,
        current_runs=current_runs,
        alpha=alpha,
    )


def is_significant(p_value: float, alpha: float) -> bool:
    return p_value <= alpha * (1 + SLACK)


def _check(values: Sequence[float], side: str) -> None:
    if not values:
        raise ValueError(f"no {side} times to compare")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{side} times must be positive and finite, got {list(values)}")


# -- paired runs (cifar-bench ab) -------------------------------------------------------------------
#
# Two installs taking turns step by step give one ratio per pair of runs (current / baseline), not two
# independent samples: the matching rank test is Wilcoxon's signed-rank test on the log ratios, and the
# matching estimate and interval are the one-sample Hodges-Lehmann ones (the median of the Walsh averages,
# cut at critical values of the exact signed-rank distribution). Mann-Whitney on the two directions of the
# same pairs would count 2^n possible sign patterns as if they were C(2n, n) orderings, and overstate
# significance (5 pairs: a smallest p of 1/252 instead of the honest 1/32).


@cache
def signed_rank_counts(n: int) -> tuple[int, ...]:
    """How many of the 2^n sign patterns give a signed-rank sum T+ = 0, 1, ..., n(n+1)/2."""
    counts = [1]
    for rank in range(1, n + 1):  # multiply by (1 + q^rank)
        grown = counts + [0] * rank
        for t in range(len(counts)):
            grown[t + rank] += counts[t]
        counts = grown
    return tuple(counts)


def _signed_rank_critical(n: int, tail: float) -> int:
    """The largest k with P(T+ <= k - 1) <= tail under the null (0: no interval reaches it)."""
    return _lower_critical(signed_rank_counts(n), 2**n, tail)


def paired_ratio_estimate(ratios: Sequence[float], confidence: float = 0.90) -> RatioEstimate:
    """The one-sample Hodges-Lehmann estimate and interval of the ratio, from per-pair ratios (> 0)."""
    _check(ratios, "paired")
    logs = [math.log(r) for r in ratios]
    walsh = sorted((logs[i] + logs[j]) / 2 for i in range(len(logs)) for j in range(i, len(logs)))
    estimate = math.exp(median(walsh))
    k = _signed_rank_critical(len(logs), (1 - confidence) / 2)
    if k < 1:
        return RatioEstimate(estimate, None, None, confidence)
    return RatioEstimate(estimate, math.exp(walsh[k - 1]), math.exp(walsh[len(walsh) - k]), confidence)


#: Pairs up to which a sample with ties is judged by all 2^n sign patterns, as scipy's "auto" does.
PERMUTATION_MAX_PAIRS = 13
#: Pairs up to which the exact signed-rank distribution is used when nothing ties, as scipy's "auto" does.
EXACT_MAX_PAIRS = 50


def paired_slower_p_value(ratios: Sequence[float]) -> float:
    """One-sided Wilcoxon signed-rank p-value for "current takes longer than baseline" (log ratios > 0).

    As scipy's ``wilcoxon(logs, alternative="greater")`` decides (the tests
    check it): pairs that are exactly equal are dropped; without ties, the
    exact distribution; with ties and at most 13 pairs, every sign pattern;
    otherwise the normal approximation with the tie correction.
    """
    logs = [math.log(r) for r in ratios]
    if not any(logs):
        return 1.0  # every pair exactly equal: no evidence of anything
    nonzero = [d for d in logs if d != 0]
    n = len(nonzero)
    ranks = _average_ranks([abs(d) for d in nonzero])
    plus = sum(r for r, d in zip(ranks, nonzero, strict=True) if d > 0)
    ties = len(set(map(abs, nonzero))) < n
    if not ties and n == len(logs) and n <= EXACT_MAX_PAIRS:
        counts = signed_rank_counts(n)
        return sum(counts[math.floor(plus) :]) / 2**n
    if len(logs) <= PERMUTATION_MAX_PAIRS:
        # Every way of flipping the pairs' signs is equally likely under "no difference": count those whose
        # statistic is at least the observed one (the ranks do not change with the signs).
        at_least = sum(
            sum(r for i, r in enumerate(ranks) if (pattern >> i) & 1) >= plus * (1 - 1e-12) for pattern in range(2**n)
        )
        return at_least / 2**n
    groups = Counter(map(abs, nonzero)).values()
    spread = math.sqrt((n * (n + 1) * (2 * n + 1) - sum(t**3 - t for t in groups) / 2) / 24)
    return 1 - NormalDist().cdf((plus - n * (n + 1) / 4) / spread)  # no continuity correction, as scipy's default


def can_judge_paired(n: int, alpha: float) -> bool:
    """Whether n pairs can ever be significant at ``alpha``: 5 pairs at 0.05 (smallest p 1/32), never 4."""
    return n >= 1 and 0.5**n <= alpha * (1 + SLACK)


def judge_paired_slowdown(ratios: Sequence[float], *, max_slowdown: float = 0.10,
                          alpha: float = 0.05) -> SlowdownDecision:  # fmt: skip
    """:func:`judge_slowdown` for paired runs: the same threshold and level, the paired rank test."""
    estimate = paired_ratio_estimate(ratios, confidence=1 - 2 * alpha)
    judged = can_judge_paired(len(ratios), alpha)
    p_value = paired_slower_p_value(ratios) if judged else None
    return _decision(estimate, p_value, judged, max_slowdown, alpha, len(ratios), len(ratios))
