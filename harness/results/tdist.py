"""Student's pooled two-sample t-test: the test ``changepoints`` judges a change point by.

The distribution itself (tails, quantiles) is ``student_t``'s, which ``compare``'s accuracy verdicts use
too: one implementation, checked against scipy's in the tests, and no scipy import on the command line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .student_t import t_ppf, t_sf


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
    if math.isinf(t):
        return 0.0
    return min(1.0, 2 * t_sf(abs(t), df))


def t_quantile(probability: float, df: float) -> float:
    """The t value below which ``probability`` of Student's t lies (0 < probability < 1)."""
    if not 0 < probability < 1:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    return t_ppf(probability, df)
