"""The defaults of change-point detection and of the regressions gate, apart from the detector (numpy)
so that the command line can show them in its help without importing numpy."""

from __future__ import annotations

from typing import Literal

#: Groups (commits) each side of a change point must hold, at least.
MIN_SEGMENT = 3
#: Significance level (Otava's and Nyrkiö's default ``max_pvalue``).
ALPHA = 0.001
Method = Literal["t", "permutation"]
METHODS: tuple[Method, ...] = ("t", "permutation")

#: A slowdown (or loss of throughput) beyond this is a regression: asv's default threshold. Below compare's
#: 10%: a change point rests on every commit either side of it, not on one pair of commits.
DEFAULT_MAX_SLOWDOWN = 0.05
#: An accuracy drop beyond this many percentage points is a regression.
DEFAULT_MAX_ACCURACY_DROP = 1.0
