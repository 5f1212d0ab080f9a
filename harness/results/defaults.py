"""The choices and defaults the reading commands' flags show, apart from the modules that use them (which
import numpy, tabulate and the statistics) so that building the command line imports none of those."""

from __future__ import annotations

from typing import Literal

# -- change points and the regressions gate --------------------------------------------------------------------

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
#: Instructions per training step beyond this fraction above the baseline's are a regression (counted runs,
#: ``run --measure instructions``): a plain threshold, as counts do not wander; compare's default too.
DEFAULT_MAX_INSTRUCTIONS_INCREASE = 0.01

# -- report ---------------------------------------------------------------------------------------------------

#: What a run is grouped by unless ``--group-by`` says otherwise. ``workload`` keeps runs of one recipe
#: that did different work (another model, other hyperparameters or data) in rows of their own.
DEFAULT_GROUP_BY = ("recipe", "device", "variant", "workload")
REPORT_FORMATS = ("text", "github", "markdown", "latex", "html", "csv", "json")

# -- compare --------------------------------------------------------------------------------------------------

#: The timings compare can judge.
COMPARE_METRICS = ("train_s", "total_s")
