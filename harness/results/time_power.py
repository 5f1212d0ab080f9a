"""The smallest slowdown the time gate would catch: the power of its rank tests, from the runs' own spread.

The time gate (:mod:`stats`) calls a slowdown a regression when the
Hodges-Lehmann estimate of ``current / baseline`` exceeds ``1 +
max_slowdown`` *and* the one-sided rank test (Mann-Whitney U; Wilcoxon
signed-rank for paired runs) is significant at ``alpha``. This module
answers the question beside every verdict: how large a slowdown would
these runs have caught, with 80% probability?

**The model.** Log times are normal around their side's centre with one
spread ``sigma``, and a slowdown shifts the current side's log times by
``delta = log(1 + slowdown)``. ``sigma`` comes from the runs themselves,
robustly: Shamos' estimator, the median absolute difference between two
runs of the same side times 1.0484 (for normal data the median of
``|x_i - x_j|`` is 0.9539 sigma). It ignores where each side sits, so a
slowdown does not inflate it, and one run slowed by a neighbour moves it
little, as it moves the rank tests little; for paired runs it is taken over
the log ratios.

**The power.** For up to ``SIMULATION_LIMIT`` pairs of runs (n m; or
Walsh averages for paired runs), exactly the gate's rule is simulated on
``DRAWS`` normal samples with a fixed seed (so a given n, m and alpha
always print the same figure): the exact critical value of the test, the
Hodges-Lehmann estimate and the threshold. Each simulated comparison
crosses both bars beyond a shift that can be written down (an order
statistic of its pairwise differences), so the shift detected with 80%
probability is the 80th percentile of those: no search. The samples are
drawn once per (n, m, alpha) and scaled by ``sigma``, so a ``compare`` pays
for it once. Beyond the limit, the large-sample formula: the rank tests
and the Hodges-Lehmann estimate behave like a t-test on
``sigma * sqrt(pi / 3)`` (their efficiency against the mean is 3/pi for
normal data), so ``delta = max(threshold, z[1-alpha] s) + z[power] s``.

**Where it is only approximate.** Everything rests on the normal model
with an estimated ``sigma``: with 3 runs a side ``sigma`` itself is
uncertain by a factor of two, and a long-tailed machine (an occasional run
far slower) breaks the model; the figure is then a guide, not a guarantee.
When the exact test cannot reach ``alpha`` at all (one run on a side, 2
against 2, fewer than 5 pairs at 5%), no slowdown can be detected, and the
functions return None ("cannot detect any difference"); the gate then
decides on the threshold alone.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from statistics import NormalDist

from .stats import (
    EXACT_MAX_PAIRS,
    EXACT_MAX_RUNS,
    SLACK,
    can_judge,
    can_judge_paired,
    signed_rank_counts,
    u_null_counts,
)

#: Simulated comparisons per (runs, alpha): the 80th percentile of 2,000 draws is within about 1% of power.
DRAWS = 2000
#: Pairs of runs (n m, or n (n + 1) / 2 Walsh averages) up to which power is simulated; beyond, the formula.
SIMULATION_LIMIT = 400
#: sigma per median |x_i - x_j| for normal data: 1 / (sqrt(2) * z[0.75]).
SHAMOS = 1 / (math.sqrt(2) * NormalDist().inv_cdf(0.75))
#: Efficiency of the rank tests (and of Hodges-Lehmann) against the t-test for normal data, 3 / pi.
RANK_EFFICIENCY = 3 / math.pi
_NORMAL = NormalDist()


@dataclass(frozen=True)
class DetectableSlowdown:
    """The slowdown (a fraction: 0.12 is 12%) caught with ``power``, or None when no slowdown can be.

    ``spread`` is sigma, the estimated SD of log times (of log ratios when
    paired); ``method`` is ``simulated``, ``large-sample`` or ``cannot
    detect any difference``.
    """

    slowdown: float | None
    spread: float | None
    method: str


def log_spread(*samples: Sequence[float]) -> float | None:
    """Shamos' robust SD of log values, from differences within each sample (None: no sample has two values)."""
    gaps = []
    for sample in samples:
        logs = [math.log(v) for v in sample]
        gaps += [abs(a - b) for i, a in enumerate(logs) for b in logs[i + 1 :]]
    return SHAMOS * statistics.median(gaps) if gaps else None


def mann_whitney_critical(n: int, m: int, alpha: float) -> int | None:
    """The smallest U (current n runs above baseline m runs) significant at ``alpha``, as the gate computes p."""
    if not can_judge(n, m, alpha):
        return None
    if min(n, m) <= EXACT_MAX_RUNS:
        counts, total, tail = u_null_counts(n, m), math.comb(n + m, n), 0
        for u in range(len(counts) - 1, -1, -1):
            tail += counts[u]
            if tail / total > alpha * (1 + SLACK):
                return u + 1
        return 0
    spread = math.sqrt(n * m * (n + m + 1) / 12)
    return math.ceil(n * m / 2 + 0.5 + _NORMAL.inv_cdf(1 - alpha) * spread)


def signed_rank_critical(n: int, alpha: float) -> int | None:
    """The smallest signed-rank sum T+ of n pairs significant at ``alpha``, as the gate computes p."""
    if not can_judge_paired(n, alpha):
        return None
    if n <= EXACT_MAX_PAIRS:
        counts, tail = signed_rank_counts(n), 0
        for t in range(len(counts) - 1, -1, -1):
            tail += counts[t]
            if tail / 2**n > alpha * (1 + SLACK):
                return t + 1
        return 0
    return math.ceil(n * (n + 1) / 4 + _NORMAL.inv_cdf(1 - alpha) * math.sqrt(n * (n + 1) * (2 * n + 1) / 24))


@cache
def _simulated(n_baseline: int, n_current: int, alpha: float) -> tuple[tuple[float, float], ...] | None:
    """Per simulated comparison (sigma 1, no slowdown): (shift it needs for significance, its HL estimate).

    ``n_current`` 0 means paired runs: ``n_baseline`` pairs of one sample.
    """
    paired = n_current == 0
    if paired:
        critical = signed_rank_critical(n_baseline, alpha)
    else:
        critical = mann_whitney_critical(n_current, n_baseline, alpha)
    if critical is None:
        return None
    rng = random.Random(f"time-power {n_baseline} {n_current}")  # a string seed: the same draws in every process
    out = []
    for _ in range(DRAWS):
        if paired:
            z = [rng.gauss(0, 1) for _ in range(n_baseline)]
            pairs = sorted((a + b) / 2 for i, a in enumerate(z) for b in z[i:])  # Walsh averages
        else:
            base = [rng.gauss(0, 1) for _ in range(n_baseline)]
            pairs = sorted(c - b for c in (rng.gauss(0, 1) for _ in range(n_current)) for b in base)
        # The statistic counts the pairs above -shift: it reaches `critical` once the shift passes the
        # critical-th largest of them, negated. The Hodges-Lehmann estimate moves with the shift.
        out.append((-pairs[len(pairs) - critical] if critical else -math.inf, statistics.median(pairs)))
    return tuple(out)


def _detectable_log_shift(spread: float, n_baseline: int, n_current: int, alpha: float, max_slowdown: float,
                          power: float) -> tuple[float | None, str]:  # fmt: skip
    """(log of the detectable ratio, method); n_current 0: paired."""
    threshold = math.log1p(max_slowdown)
    pairs = n_baseline * (n_baseline + 1) // 2 if n_current == 0 else n_baseline * n_current
    if pairs > SIMULATION_LIMIT:
        scale = 1 / n_baseline if n_current == 0 else 1 / n_baseline + 1 / n_current
        se = spread * math.sqrt(scale / RANK_EFFICIENCY)
        shift = max(threshold, _NORMAL.inv_cdf(1 - alpha) * se) + _NORMAL.inv_cdf(power) * se
        return shift, "large-sample"
    draws = _simulated(n_baseline, n_current, alpha)
    if draws is None:
        return None, "cannot detect any difference"
    needed = sorted(max(spread * significant, threshold - spread * estimate) for significant, estimate in draws)
    return needed[min(len(needed) - 1, math.ceil(power * len(needed)) - 1)], "simulated"


def detectable_log_shift(spread: float, n_baseline: int, n_current: int, *, alpha: float = 0.05,
                         max_slowdown: float = 0.10, power: float = 0.8,
                         paired: bool = False) -> DetectableSlowdown:  # fmt: skip
    """The slowdown the gate catches with ``power``, for a given spread (SD of log times) and run counts.

    ``paired``: n_baseline pairs of runs judged by the signed-rank test
    (``n_current`` is then ignored). ``max_slowdown`` 0 asks about the test
    alone (the estimate need only be above 1).
    """
    if not (spread >= 0 and math.isfinite(spread)):
        raise ValueError(f"the spread must be a finite SD of log times, got {spread}")
    if not (0 < alpha < 0.5 and 0 < power < 1 and max_slowdown >= 0):
        raise ValueError(f"need 0 < alpha < 0.5, 0 < power < 1 and max_slowdown >= 0; got {alpha}, {power}, "
                         f"{max_slowdown}")  # fmt: skip
    shift, method = _detectable_log_shift(spread, n_baseline, 0 if paired else n_current, alpha, max_slowdown, power)
    return DetectableSlowdown(None if shift is None else math.expm1(shift), spread, method)


def detectable_slowdown(baseline: Sequence[float], current: Sequence[float], *, alpha: float = 0.05,
                        max_slowdown: float = 0.10, power: float = 0.8) -> DetectableSlowdown:  # fmt: skip
    """What :func:`stats.judge_slowdown` on these times (seconds or ratios, > 0) would catch with ``power``.

    With one run on each side nothing measures the spread: ``spread`` and
    ``slowdown`` are None.
    """
    spread = log_spread(baseline, current)
    if spread is None or not can_judge(len(baseline), len(current), alpha):
        return DetectableSlowdown(None, spread, "cannot detect any difference")
    return detectable_log_shift(spread, len(baseline), len(current), alpha=alpha, max_slowdown=max_slowdown,
                                power=power)  # fmt: skip


def detectable_paired_slowdown(ratios: Sequence[float], *, alpha: float = 0.05, max_slowdown: float = 0.10,
                               power: float = 0.8) -> DetectableSlowdown:  # fmt: skip
    """What :func:`stats.judge_paired_slowdown` on these per-pair ratios (> 0) would catch with ``power``."""
    spread = log_spread(ratios)
    if spread is None or not can_judge_paired(len(ratios), alpha):
        return DetectableSlowdown(None, spread, "cannot detect any difference")
    return detectable_log_shift(spread, len(ratios), 0, alpha=alpha, max_slowdown=max_slowdown, power=power,
                                paired=True)  # fmt: skip
