"""Student's t distribution in pure Python: CDF, survival function, quantiles and density.

The accuracy verdicts of ``compare`` need t probabilities and quantiles for
any degrees of freedom, including the fractional ones of Welch's test.
scipy has them, but importing it would triple the time a ``compare`` takes,
so they are computed here from the regularized incomplete beta function:

    P(T <= -|t|) = I_x(df / 2, 1 / 2) / 2,   x = df / (df + t^2)

with ``I_x`` from its continued fraction (evaluated by the modified Lentz
method), switched to ``1 - I_(1-x)(b, a)`` where that converges faster.
Both ``x`` and ``1 - x`` are computed directly from ``t`` so that neither
loses digits to a subtraction, and the log of the beta function is taken
from a Stirling series when one argument is large (a plain difference of
``math.lgamma`` values of order 10^6 would lose ten digits). The tests
check CDF and quantiles against ``scipy.stats.t`` to 1e-10 (relative) from
0.1 to 10^6 degrees of freedom, tails included.

Quantiles invert the CDF by Newton's method on ``log CDF`` against
``log |t|``, which is nearly a straight line in the tails (slope -df), kept
inside a bracket by bisection. ``df = math.inf`` is the standard normal.
"""

from __future__ import annotations

import math
from statistics import NormalDist

#: Relative precision the continued fraction and the quantile search stop at.
EPSILON = 1e-15
#: Continued-fraction terms before giving up; the count grows as sqrt(df), so 10^6 df takes about 2,000.
MAX_TERMS = 100_000
#: Tiny positive number that keeps Lentz's method from dividing by zero.
TINY = 1e-300
#: Above this many degrees of freedom the t distribution is the normal to within 1e-12 (it differs by O(1/df)).
NORMAL_DF = 1e13
#: Coefficients of Stirling's series for log Γ(x) - [(x - 1/2) log x - x + log(2π) / 2], in powers 1/x, 1/x^3, ...
_STIRLING = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156)
#: log of the largest float: a quantile beyond it is -inf.
LOG_FLOAT_MAX = math.log(1.7e308)
#: From here on Stirling's series (seven terms) is accurate to 1e-16.
STIRLING_FROM = 10.0
_NORMAL = NormalDist()


def _stirling_correction(x: float) -> float:
    """log Γ(x) - [(x - 1/2) log x - x + log(2π) / 2], for x >= STIRLING_FROM."""
    inverse_square = 1 / (x * x)
    total = 0.0
    for coefficient in reversed(_STIRLING):
        total = total * inverse_square + coefficient
    return total / x


def log_gamma_ratio(a: float, b: float) -> float:
    """log Γ(a) - log Γ(a + b) for a, b > 0, without the cancellation of two large lgamma values."""
    if a < STIRLING_FROM:
        return math.lgamma(a) - math.lgamma(a + b)
    return (
        -(a - 0.5) * math.log1p(b / a) - b * math.log(a + b) + b + _stirling_correction(a) - _stirling_correction(a + b)
    )


def log_beta(a: float, b: float) -> float:
    """log B(a, b) = log Γ(a) + log Γ(b) - log Γ(a + b), accurate when one argument is large."""
    small, large = min(a, b), max(a, b)
    return math.lgamma(small) + log_gamma_ratio(large, small)


def _continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b), without its prefactor (converges fast for x < (a+1)/(a+b+2))."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > TINY else TINY)
    result = d
    for m in range(1, MAX_TERMS):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > TINY else TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > TINY else TINY
            result *= c * d
        if abs(c * d - 1.0) < EPSILON:
            return result
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def incomplete_beta(a: float, b: float, x: float, y: float | None = None) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1.

    ``y`` is ``1 - x``; pass it when it is known more precisely than that
    subtraction gives (for small ``1 - x``).
    """
    y = 1.0 - x if y is None else y
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    # log x as log1p(-y) when x is near 1: x itself was rounded to 1e-16 absolute, a relative error of 1e-16 / y
    # in log x, which a (df / 2, up to 1e6 and more) multiplies.
    log_x = math.log1p(-y) if x > 0.5 else math.log(x)
    log_y = math.log1p(-x) if y > 0.5 else math.log(y)
    log_front = a * log_x + b * log_y - log_beta(a, b)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _continued_fraction(b, a, y) / b


def _check_df(df: float) -> None:
    if not df > 0:  # also refuses NaN
        raise ValueError(f"degrees of freedom must be positive, got {df}")


def _lower_tail(t: float, df: float) -> float:
    """P(T <= t) for t <= 0, accurate to the last digits however far out in the tail."""
    if df >= NORMAL_DF:
        return _NORMAL.cdf(t)
    if math.isinf(t):
        return 0.0
    square = t * t
    if math.isinf(square):  # |t| beyond 1e154: x = df / t^2 without overflow
        x, y = df / -t / -t, 1.0
    else:
        x, y = df / (df + square), square / (df + square)
    return 0.5 * incomplete_beta(df / 2, 0.5, x, y)


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (df > 0, fractional allowed, inf: normal)."""
    _check_df(df)
    if math.isnan(t):
        return math.nan
    return _lower_tail(t, df) if t <= 0 else 1.0 - _lower_tail(-t, df)


def t_sf(t: float, df: float) -> float:
    """P(T > t), the upper tail, as precise far out as :func:`t_cdf` is in the lower tail."""
    return t_cdf(-t, df)


def t_pdf(t: float, df: float) -> float:
    """The density of Student's t at ``t``."""
    _check_df(df)
    if df >= NORMAL_DF:
        return _NORMAL.pdf(t)
    log_scale = -log_gamma_ratio(df / 2, 0.5) - 0.5 * math.log(df * math.pi)
    return math.exp(log_scale - (df + 1) / 2 * math.log1p(t * t / df))


def _first_guess(p: float, df: float) -> float:
    """log |t| near the quantile p < 1/2: Cornish-Fisher from the normal, or the power tail where that is nearer.

    Far out, P(T <= -s) ~ C s^-df, which gives an upper bound on |t| that is
    tight once p is small; Cornish-Fisher is good near the centre for all
    but the smallest df. The smaller of the two, unless the power tail is
    much nearer in log p (checked with one evaluation of the CDF).
    """
    z = _NORMAL.inv_cdf(p)
    cornish_fisher = abs(z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df * df))
    log_c = -log_gamma_ratio(df / 2, 0.5) - 0.5 * math.log(math.pi) + df / 2 * math.log(df) - math.log(df)
    power_tail = min((log_c - math.log(p)) / df, LOG_FLOAT_MAX - 1)
    normal_side = math.log(cornish_fisher) if cornish_fisher > 0 else -50.0
    if power_tail <= normal_side:
        return power_tail
    miss = abs(math.log(max(_lower_tail(-math.exp(normal_side), df), TINY)) - math.log(p))
    return power_tail if miss > 1.0 else normal_side


def t_ppf(p: float, df: float) -> float:
    """The quantile: the t with P(T <= t) = p (0 < p < 1; -inf at 0, inf at 1).

    For an upper quantile near 1 use ``-t_ppf(1 - level, df)`` with the small
    tail probability written directly: ``1 - p`` computed from ``p`` near 1 has
    already lost digits.
    """
    _check_df(df)
    if math.isnan(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"a probability must be within [0, 1], got {p}")
    if p in (0.0, 1.0):
        return math.copysign(math.inf, p - 0.5)
    if p == 0.5:
        return 0.0
    if p > 0.5:
        return -_lower_quantile(1.0 - p, df)
    return _lower_quantile(p, df)


def _lower_quantile(p: float, df: float) -> float:
    """The quantile for 0 < p < 1/2, as -exp(u): Newton on log CDF against u = log|t|, kept in a bracket.

    The gap ``log p - log CDF(-exp(u))`` rises with u, so a Newton step
    always heads the right way; it can only overshoot a bound already seen,
    and then the step is a bisection instead. About 4 CDF evaluations.
    """
    if df >= NORMAL_DF:
        return _NORMAL.inv_cdf(p)
    target = math.log(p)
    log_density_scale = -log_gamma_ratio(df / 2, 0.5) - 0.5 * math.log(df * math.pi)
    low, high = -math.inf, math.inf
    u = _first_guess(p, df)
    for _ in range(200):
        s = math.exp(u)
        tail = _lower_tail(-s, df)
        gap = target - math.log(max(tail, TINY))
        if gap == 0:
            break
        low, high = (u, high) if gap < 0 else (low, u)
        density = math.exp(log_density_scale - (df + 1) / 2 * math.log1p(s * s / df)) if tail > 0 else 0.0
        slope = density * s / tail if density > 0 else 0.0  # d gap / du, positive
        step = gap / slope if slope > 0 else -math.inf if gap < 0 else math.inf
        if abs(step) <= 4 * EPSILON * max(1.0, abs(u)):
            return -math.exp(u - step)  # converged (checked before the bracket: u - step may sit on its edge)
        candidate = min(u - step, LOG_FLOAT_MAX)
        if not low < candidate < high:
            if high == math.inf:  # the tail is still too heavy at the largest float
                return -math.inf
            candidate = (low + high) / 2 if low > -math.inf else high - 1.0
        u = candidate
        if high - low <= 4 * EPSILON * max(1.0, abs(u)):
            break
    return -math.exp(u)
