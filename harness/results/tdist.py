"""Student's t-test of two samples, without scipy: the test ``changepoints`` judges a change point by.

The t distribution's tail is the regularized incomplete beta function, ``P(|T| >= t) = I_x(df/2, 1/2)``
with ``x = df / (df + t²)``, evaluated by its continued fraction (modified Lentz), which converges fast
on the side of ``x`` used here. scipy is not imported because the command line must stay light
(``compare`` avoids it for the same reason); the tests check these numbers against scipy's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Continued-fraction terms before giving up (the fraction converges in well under 100 for any df used here).
MAX_TERMS = 300
#: Relative precision the continued fraction is carried to.
EPSILON = 1e-15
#: Stands in for 0 in Lentz's method, where a denominator would vanish.
TINY = 1e-300


@dataclass(frozen=True)
class TTest:
    """Student's two-sample t-test of ``right - left``, with the pooled variance.

    ``difference``: mean of right minus mean of left; ``se``: its standard error; ``df``: degrees of freedom;
    ``p_value``: two-sided. A sample without spread on either side (every value equal) has ``se`` 0: then
    ``p_value`` is 1 when the means are equal and 0 when they differ.
    """

    difference: float
    se: float
    df: int
    p_value: float

    def interval(self, confidence: float) -> tuple[float, float]:
        """The ``confidence`` interval of the difference (two-sided)."""
        half = t_quantile(0.5 + confidence / 2, self.df) * self.se
        return self.difference - half, self.difference + half


def student_t_test(left: Sequence[float], right: Sequence[float]) -> TTest:
    """Pooled-variance two-sample t-test; each side needs a value, and the two together three."""
    n, m = len(left), len(right)
    if n < 1 or m < 1 or n + m < 3:
        raise ValueError(f"a t-test needs a value on each side and three in all, got {n} and {m}")
    mean_l, mean_r = math.fsum(left) / n, math.fsum(right) / m
    squares = math.fsum((v - mean_l) ** 2 for v in left) + math.fsum((v - mean_r) ** 2 for v in right)
    df = n + m - 2
    se = math.sqrt(squares / df * (1 / n + 1 / m))
    difference = mean_r - mean_l
    if se == 0:
        return TTest(difference, 0.0, df, 1.0 if difference == 0 else 0.0)
    return TTest(difference, se, df, two_sided_p(difference / se, df))


def two_sided_p(t: float, df: float) -> float:
    """``P(|T| >= |t|)`` for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isinf(t):
        return 0.0
    return min(1.0, regularized_beta(df / (df + t * t), df / 2, 0.5))


def t_quantile(probability: float, df: float) -> float:
    """The t value below which ``probability`` of Student's t lies (0 < probability < 1), by bisection."""
    if not 0 < probability < 1:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    if probability == 0.5:
        return 0.0
    tail = 2 * min(probability, 1 - probability)  # two-sided tail beyond |t|
    low, high = 0.0, 1.0
    while two_sided_p(high, df) > tail:
        high *= 2
    for _ in range(200):  # halves the bracket each time: far past float precision
        middle = (low + high) / 2
        if two_sided_p(middle, df) > tail:
            low = middle
        else:
            high = middle
        if high - low <= EPSILON * high:
            break
    t = (low + high) / 2
    return t if probability > 0.5 else -t


def regularized_beta(x: float, a: float, b: float) -> float:
    """``I_x(a, b)``, the regularized incomplete beta function, for 0 <= x <= 1 and a, b > 0."""
    if not 0 <= x <= 1:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = a * math.log(x) + b * math.log1p(-x) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    if x < (a + 1) / (a + b + 2):  # the fraction converges fast here; use the symmetry on the other side
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1 - math.exp(log_front) * _beta_fraction(1 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of the incomplete beta function, by the modified Lentz method."""
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > TINY else TINY)
    result = d
    for m in range(1, MAX_TERMS + 1):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # fmt: skip
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > TINY else TINY)
            c = 1 + numerator / c
            c = c if abs(c) > TINY else TINY
            result *= c * d
        if abs(c * d - 1) < EPSILON:
            return result
    raise ArithmeticError(f"the incomplete beta fraction did not converge (x={x}, a={a}, b={b})")
