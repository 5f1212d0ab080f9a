"""Accuracy across seeds: summaries, Welch's test, the accuracy gate, and how many seeds a question needs.

Test accuracy is a mean over thousands of test images, so across seeds it is
close to normal, and what a recipe change moves is its mean: the tools are
the t interval of a mean, Welch's t-test of two means (no equal-variance
assumption: a change can make training less stable as well as worse) and
the power of that test. Values are percentage points throughout (the
functions work in any unit; ``compare`` passes ``test_accuracy_pct``).

* :func:`summarize`: n, mean, SD and the t interval of the mean (95%).
* :func:`welch_test`: current minus baseline mean, its interval, one-sided
  p-values both ways, Welch-Satterthwaite df, and the smallest drop the
  comparison would detect with 80% power.
* :func:`judge_accuracy`: the gate. A **regression** is a drop that is
  significant at ``alpha`` *and* larger than ``max_drop``; a significant
  gain is an **improvement**.
* :func:`detectable_difference`, :func:`power_at`, :func:`seeds_needed`: the
  same power arithmetic, for planning.
* :func:`reaches_target`: one-sided t-test that the mean reaches a target.

The interval of the difference is two-sided at ``1 - 2 alpha`` (90% at the
default 5%), as :mod:`stats` does for time: its upper end is below zero
exactly when the one-sided test of a drop is significant at ``alpha``, so
the interval and the verdict never disagree.

Power uses the central-t approximation: a drop ``d`` is detected with
probability ``power`` when ``d = (t[1-alpha, df] + t[power, df]) * se``.
Against the exact noncentral t it gives 80.0-80.7% power from 2 df up (77%
at 1 df). With the threshold, the gate needs the estimate beyond both the
threshold and the significance boundary: ``d = max(max_drop, t[1-alpha, df]
* se) + t[power, df] * se``. Simulated with normal seeds (the tests), the
printed drop is caught 79-80% of the time at 5 and 10 seeds a side; at 3 a
side, 74%, because Welch's df, estimated from three values a side, is often
lower than the 4 the formula assumes. On real runs (``benchmarks/accuracy_gate.py``,
the baseline on a 20,000-image subset), 77% at 5 seeds and 80% at 10.

**The default threshold, 0.5 points.** Significance is what keeps noise
from failing the gate (identical recipes fail at rate ``alpha``, whatever
the threshold below the significance boundary); the threshold only spares
a real but negligible drop that many seeds have made significant. So it
must sit below the losses that matter (the changes people make move
accuracy by 0.1-1 point, and a significant loss of 0.8 must fail) and
need not sit below what the test set itself can resolve: one model's
accuracy near 54% measured on CIFAR-10's 10,000 test images has a binomial
standard error of 0.50 points (0.4 near 80%, 0.24 near 94%: lower the
threshold for such recipes), so a smaller drop says little about the recipe
beyond these images. Measured on the 2-core AMD EPYC VM (torch 2.14.1, one
thread, CIFAR-10 JPEG copy, load average 3-6): the full baseline recipe (2
epochs, 50,000 images) over 8 seeds gave 51.23-56.24%, SD 1.72 points (the
tutorial's own three runs: 53.75-56.15%, SD 1.0); a 1-epoch run on 20,000
images, SD 1.65 over 50 seeds. At SD 1.7, the smallest drop that can be
significant is 2.0 points at 5 seeds a side, 1.3 at 10 and 0.9 at 20, so for
the baseline the threshold never binds below about 65 seeds a side and costs
no power; it binds for quiet recipes (SD under 0.64 at 10 seeds a side).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .student_t import t_cdf, t_ppf, t_sf

#: Percentage points: the smallest drop in mean accuracy that the gate calls a regression (when significant);
#: about one binomial standard error of a ~54% accuracy on 10,000 test images (why: the module docstring).
DEFAULT_MAX_DROP = 0.5
#: One-sided significance level of the accuracy tests, as compare's --alpha.
DEFAULT_ALPHA = 0.05
#: Probability of detecting a difference that "detectable" refers to.
DEFAULT_POWER = 0.8
#: Confidence of the interval of a mean in summaries (two-sided).
DEFAULT_CONFIDENCE = 0.95
#: Percentage points: with one run a side nothing measures the noise, and only a drop beyond this (or beyond
#: max_drop, if larger) is a regression. About 2 SD of a one-run-against-one difference at the spread measured
#: for the baseline (SD 1.65-1.72 points a run, so 2.3-2.4 for a difference): identical 1-vs-1 pairs of the
#: benchmark's pool crossed it 1.6% of the time, where max_drop alone (0.5) would flag about a third of them.
DEFAULT_SINGLE_RUN_MAX_DROP = 5.0
#: Runs needed for an olympic mean (MLPerf drops the fastest and slowest of 5-10 runs).
OLYMPIC_MIN_RUNS = 5
#: Relative slack when comparing a p-value with alpha (floating point), as in :mod:`stats`.
SLACK = 1e-9
#: The most seeds a side :func:`seeds_needed` looks for before saying the question is out of reach.
MAX_SEEDS = 1_000_000


@dataclass(frozen=True)
class MeanSummary:
    """n values summarised: mean, sample SD (n - 1) and the two-sided t interval of the mean.

    ``sd``, ``ci_low`` and ``ci_high`` are None for a single value (no spread to measure).
    """

    n: int
    mean: float
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float


@dataclass(frozen=True)
class DifferenceTest:
    """Current minus baseline mean (points), tested both ways; what this comparison could detect.

    ``method``: ``welch``; ``pooled`` when one side has a single run (its
    spread is taken to be the other side's); ``none`` with one run a side
    (nothing measures the noise: ``ci``, p-values, ``df``, ``se`` and
    ``detectable`` are None). With no spread on either side (every value
    equal within each side) the difference is exact: ``se`` 0, the interval
    a point, p 0 or 1 (1 both ways when nothing changed), ``detectable`` 0,
    ``df`` None.
    """

    difference: float
    ci_low: float | None
    ci_high: float | None
    confidence: float  # of the two-sided interval: 1 - 2 alpha
    p_drop: float | None  # one-sided: the current mean is lower
    p_gain: float | None  # one-sided: the current mean is higher
    df: float | None  # Welch-Satterthwaite degrees of freedom
    se: float | None  # standard error of the difference, points
    n_baseline: int
    n_current: int
    detectable: float | None  # the smallest drop (points, > 0) detected with `power` at `alpha`, by the test alone
    alpha: float
    power: float
    method: str


@dataclass(frozen=True)
class AccuracyVerdict:
    """The gate's reading of one comparison; ``verdict`` says it in words.

    ``verdict``: ``regression`` (a significant drop beyond ``max_drop``),
    ``improvement`` (a significant gain), ``drop within threshold``
    (significant, but not beyond ``max_drop``), ``not significant``, or,
    with one run a side, where no test is possible and ``judged`` is False,
    ``regression`` (a drop beyond the larger single-run threshold, see
    :data:`DEFAULT_SINGLE_RUN_MAX_DROP`) or ``too few seeds``. ``max_drop``
    is the threshold applied (the single-run one with one run a side).
    ``detectable`` is the smallest drop this rule would call a regression
    with ``power`` (at least ``max_drop``; None with one run a side).
    """

    test: DifferenceTest
    max_drop: float
    judged: bool
    regression: bool
    improvement: bool
    verdict: str
    detectable: float | None


@dataclass(frozen=True)
class TargetTest:
    """One-sided t-test that the mean reaches ``target``: ``p_value`` of "mean <= target".

    ``lower_bound`` is the one-sided ``1 - alpha`` lower confidence bound of
    the mean; ``reached`` is True when the test is significant (the bound is
    above the target). One value: ``p_value``, ``lower_bound`` and ``reached``
    are None.
    """

    n: int
    mean: float
    sd: float | None
    target: float
    lower_bound: float | None
    p_value: float | None
    reached: bool | None
    alpha: float


def _values(values: Sequence[float], name: str) -> list[float]:
    """The values as floats; raises ValueError when there are none or one is NaN or infinite."""
    floats = [float(v) for v in values]
    if not floats:
        raise ValueError(f"no {name} values")
    bad = [v for v in floats if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{len(bad)} of the {name} values are not finite numbers (leave out such runs first)")
    return floats


def _check_level(name: str, value: float, upper: float = 1.0) -> None:
    if not 0 < value < upper:
        raise ValueError(f"{name} must be between 0 and {upper}, got {value}")


def summarize(values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> MeanSummary:
    """Mean, sample SD and the two-sided t interval of the mean at ``confidence`` (NaN: ValueError)."""
    _check_level("confidence", confidence)
    data = _values(values, "summarised")
    mean = statistics.fmean(data)
    if len(data) < 2:
        return MeanSummary(1, mean, None, None, None, confidence)
    sd = statistics.stdev(data)
    half = -t_ppf((1 - confidence) / 2, len(data) - 1) * sd / math.sqrt(len(data))
    return MeanSummary(len(data), mean, sd, mean - half, mean + half, confidence)


def olympic_mean(values: Sequence[float]) -> float | None:
    """MLPerf's olympic mean: drop one lowest and one highest value, average the rest; None below 5 values."""
    data = sorted(_values(values, "olympic"))
    if len(data) < OLYMPIC_MIN_RUNS:
        return None
    return statistics.fmean(data[1:-1])


def welch_df(var_b: float, n_b: int, var_c: float, n_c: int) -> float:
    """Welch-Satterthwaite degrees of freedom from the two sample variances (both zero: undefined, NaN)."""
    a, b = var_b / n_b, var_c / n_c
    if a + b == 0:
        return math.nan
    return (a + b) ** 2 / (a * a / (n_b - 1) + b * b / (n_c - 1))


def _standard_error(b: list[float], c: list[float]) -> tuple[float | None, float | None, str]:
    """(se of the difference, df, method); (None, None, "none") with one run a side."""
    n_b, n_c = len(b), len(c)
    if n_b < 2 and n_c < 2:
        return None, None, "none"
    if n_b < 2 or n_c < 2:  # one run on one side: the other side's variance is the only estimate of the noise
        var = statistics.variance(c if n_b < 2 else b)
        return math.sqrt(var * (1 / n_b + 1 / n_c)), float(max(n_b, n_c) - 1), "pooled"
    var_b, var_c = statistics.variance(b), statistics.variance(c)
    df = welch_df(var_b, n_b, var_c, n_c)
    return math.sqrt(var_b / n_b + var_c / n_c), (None if math.isnan(df) else df), "welch"


def welch_test(baseline: Sequence[float], current: Sequence[float], *, alpha: float = DEFAULT_ALPHA,
               power: float = DEFAULT_POWER) -> DifferenceTest:  # fmt: skip
    """Welch's t-test of current minus baseline mean accuracy (points), both ways, with the detectable drop.

    Raises ValueError on an empty side or a value that is NaN or infinite.
    See :class:`DifferenceTest` for one run a side and for zero spread.
    """
    _check_level("alpha", alpha, 0.5)
    _check_level("power", power)
    b, c = _values(baseline, "baseline"), _values(current, "current")
    difference = statistics.fmean(c) - statistics.fmean(b)
    se, df, method = _standard_error(b, c)
    counts = {"n_baseline": len(b), "n_current": len(c), "alpha": alpha, "power": power, "method": method}
    common = {"difference": difference, "confidence": 1 - 2 * alpha, "se": se, "df": df, **counts}
    if se is None:
        return DifferenceTest(ci_low=None, ci_high=None, p_drop=None, p_gain=None, detectable=None, **common)
    if se == 0:  # no spread anywhere: the difference is exact
        p_drop, p_gain = (0.0 if difference < 0 else 1.0), (0.0 if difference > 0 else 1.0)
        return DifferenceTest(ci_low=difference, ci_high=difference, p_drop=p_drop, p_gain=p_gain, detectable=0.0,
                              **common)  # fmt: skip
    assert df is not None  # se > 0 implies a defined df
    half = -t_ppf(alpha, df) * se
    return DifferenceTest(
        ci_low=difference - half,
        ci_high=difference + half,
        p_drop=t_cdf(difference / se, df),
        p_gain=t_sf(difference / se, df),
        detectable=_detectable(se, df, alpha, power, 0.0),
        **common,
    )


def _detectable(se: float, df: float, alpha: float, power: float, threshold: float) -> float:
    """The drop detected with ``power``: the estimate must pass max(threshold, significance boundary)."""
    return max(threshold, -t_ppf(alpha, df) * se) + t_ppf(power, df) * se


def judge_accuracy(baseline: Sequence[float], current: Sequence[float], *, max_drop: float = DEFAULT_MAX_DROP,
                   alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER,
                   single_run_max_drop: float = DEFAULT_SINGLE_RUN_MAX_DROP) -> AccuracyVerdict:  # fmt: skip
    """The accuracy gate: a regression is a drop both significant at ``alpha`` and larger than ``max_drop`` points.

    With one run a side nothing measures the noise (``judged`` False): only a
    drop beyond ``max(max_drop, single_run_max_drop)`` points is a regression.
    ``max_drop`` alone would flag about a third of identical pairs at the
    baseline's spread, since one run against one differs by 2.4 points (SD).
    """
    if max_drop < 0 or single_run_max_drop < 0:
        raise ValueError(f"thresholds are sizes in points, not negative; got {max_drop}, {single_run_max_drop}")
    test = welch_test(baseline, current, alpha=alpha, power=power)
    if test.p_drop is None or test.p_gain is None:  # one run a side: no test, only the single-run threshold
        threshold = max(max_drop, single_run_max_drop)
        beyond = test.difference < -threshold
        verdict = "regression" if beyond else "too few seeds"
        return AccuracyVerdict(test, threshold, False, beyond, False, verdict, None)
    beyond = test.difference < -max_drop
    dropped = test.p_drop <= alpha * (1 + SLACK)
    improved = test.p_gain <= alpha * (1 + SLACK)
    regression = dropped and beyond
    if regression:
        verdict = "regression"
    elif improved:
        verdict = "improvement"
    elif dropped:
        verdict = "drop within threshold"
    else:
        verdict = "not significant"
    detectable = max_drop if test.se == 0 else _detectable(test.se, test.df, alpha, power, max_drop)  # type: ignore[arg-type]
    return AccuracyVerdict(test, max_drop, True, regression, improved, verdict, detectable)


# -- planning: power, detectable differences, seeds ---------------------------------------------------------


def _planned_se_df(sd_b: float, n_b: int, sd_c: float, n_c: int) -> tuple[float, float]:
    """(se, df) of a comparison with these spreads and counts, as :func:`welch_test` would compute them."""
    if min(n_b, n_c) < 1 or max(n_b, n_c) < 2:
        raise ValueError(f"a test needs at least 2 runs on one side and 1 on the other, got {n_b} and {n_c}")
    if not (sd_b >= 0 and sd_c >= 0 and math.isfinite(sd_b) and math.isfinite(sd_c)):
        raise ValueError(f"spreads must be finite and not negative, got {sd_b} and {sd_c}")
    if min(n_b, n_c) < 2:  # one run on one side: its spread is the other side's
        sd = sd_c if n_b < 2 else sd_b
        return sd * math.sqrt(1 / n_b + 1 / n_c), float(max(n_b, n_c) - 1)
    df = welch_df(sd_b**2, n_b, sd_c**2, n_c)
    return math.sqrt(sd_b**2 / n_b + sd_c**2 / n_c), (n_b + n_c - 2 if math.isnan(df) else df)


def detectable_difference(sd_baseline: float, n_baseline: int, sd_current: float, n_current: int, *,
                          alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER,
                          threshold: float = 0.0) -> float:  # fmt: skip
    """The smallest drop (points) that n_baseline vs n_current runs with these SDs detect with ``power``.

    ``threshold`` 0: by the one-sided Welch test at ``alpha`` alone; the
    gate's ``max_drop``: by the gate (significant *and* beyond the threshold).
    """
    _check_level("alpha", alpha, 0.5)
    _check_level("power", power)
    se, df = _planned_se_df(sd_baseline, n_baseline, sd_current, n_current)
    return threshold if se == 0 else _detectable(se, df, alpha, power, threshold)


def power_at(drop: float, sd_baseline: float, n_baseline: int, sd_current: float, n_current: int, *,
             alpha: float = DEFAULT_ALPHA, threshold: float = 0.0) -> float:  # fmt: skip
    """The probability (0-1) that a true drop of ``drop`` points is detected (the inverse of the above)."""
    _check_level("alpha", alpha, 0.5)
    se, df = _planned_se_df(sd_baseline, n_baseline, sd_current, n_current)
    if se == 0:
        return 1.0 if drop > threshold else 0.0
    return t_cdf((drop - max(threshold, -t_ppf(alpha, df) * se)) / se, df)


def seeds_needed(sd: float, drop: float, *, alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER,
                 threshold: float = 0.0) -> int | None:  # fmt: skip
    """Seeds a side (equal on both, SD ``sd`` points each) to detect a drop of ``drop`` points with ``power``.

    The t quantiles depend on n (df = 2n - 2), so n is searched, not solved
    from the normal. ``threshold`` as in :func:`detectable_difference`; a drop
    no larger than it is never detected with more than 50% probability,
    whatever n: then None, as when more than ``MAX_SEEDS`` would be needed.
    """
    if not drop > 0:
        raise ValueError(f"the drop to detect must be positive, got {drop}")
    if drop <= threshold:
        return None

    def enough(n: int) -> bool:
        return detectable_difference(sd, n, sd, n, alpha=alpha, power=power, threshold=threshold) <= drop

    high = 2
    while not enough(high):
        if high >= MAX_SEEDS:
            return None
        high = min(2 * high, MAX_SEEDS)
    low = max(1, high // 2)  # enough(high); the answer lies in (low, high]
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def reaches_target(values: Sequence[float], target: float, *, alpha: float = DEFAULT_ALPHA) -> TargetTest:
    """One-sided t-test that the mean of ``values`` exceeds ``target`` (same unit), as record claims are made.

    With no spread (every value equal) the mean is exact: p 0 when it is
    above the target, 1 otherwise.
    """
    _check_level("alpha", alpha, 0.5)
    data = _values(values, "target-test")
    mean = statistics.fmean(data)
    if len(data) < 2:
        return TargetTest(1, mean, None, target, None, None, None, alpha)
    sd = statistics.stdev(data)
    se = sd / math.sqrt(len(data))
    if se == 0:
        p_value = 0.0 if mean > target else 1.0
        return TargetTest(len(data), mean, sd, target, mean, p_value, p_value <= alpha, alpha)
    p_value = t_sf((mean - target) / se, len(data) - 1)
    lower = mean + t_ppf(alpha, len(data) - 1) * se
    return TargetTest(len(data), mean, sd, target, lower, p_value, p_value <= alpha * (1 + SLACK), alpha)
