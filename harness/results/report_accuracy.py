"""``report``'s columns across seeds: mean accuracy with its spread and interval, and time to a target accuracy.

Beside each row's median [IQR] (what one typical run did), these say what
the runs add up to, as papers and benchmarks report it:

* ``n``: runs with a test accuracy; ``accuracy_mean``, ``accuracy_std``
  (sample SD, n - 1) and ``accuracy_ci_low`` / ``accuracy_ci_high``, the 95%
  t interval of the mean, all in percentage points (as airbench reports mean
  and SD over its runs). With one run, the SD and interval are empty.
* With ``run --target-acc``: ``target_acc`` (the target, %; empty when the
  row's runs aimed at different targets, which never pool), ``target_reached``
  (runs that reached it, of those that aimed at it), ``time_to_target_median``
  (train seconds, AlgoPerf's summary; a run that never reached the target
  counts as infinitely slow, so the median is empty once half of the runs
  missed) and, with 5 or more runs, ``time_to_target_olympic``: MLPerf's
  olympic mean, dropping the fastest and the slowest run (empty when a run
  kept in the mean missed).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .accuracy_stats import OLYMPIC_MIN_RUNS, summarize

if TYPE_CHECKING:
    import pandas as pd

#: The accuracy columns, in their order in the table (``report --format json`` rows carry these names).
ACCURACY_COLUMNS = ("n", "accuracy_mean", "accuracy_std", "accuracy_ci_low", "accuracy_ci_high")
#: The time-to-target columns, present when some run was made with ``--target-acc``.
TARGET_COLUMNS = ("target_acc", "target_reached", "time_to_target_median", "time_to_target_olympic")
#: How the human formats (text, github, markdown, latex, html) head these columns; csv and json keep the names.
LABELS = {
    "accuracy_mean": "acc mean %", "accuracy_std": "acc SD", "accuracy_ci_low": "acc 95% CI low",
    "accuracy_ci_high": "acc 95% CI high", "target_acc": "target %", "target_reached": "reached",
    "time_to_target_median": "to target s (median)", "time_to_target_olympic": "to target s (olympic)",
}  # fmt: skip


def accuracy_summary(values: Sequence[float]) -> dict[str, Any]:
    """n, mean, SD and the 95% interval of the mean of the finite accuracies (points); NaN where undefined."""
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return {"n": 0, **dict.fromkeys(ACCURACY_COLUMNS[1:], math.nan)}
    s = summarize(finite)
    nan = math.nan
    return {"n": s.n, "accuracy_mean": s.mean, "accuracy_std": nan if s.sd is None else s.sd,
            "accuracy_ci_low": nan if s.ci_low is None else s.ci_low,
            "accuracy_ci_high": nan if s.ci_high is None else s.ci_high}  # fmt: skip


def target_summary(targets: Sequence[float], times: Sequence[float]) -> dict[str, Any]:
    """Time to target over the runs that aimed at one (``targets`` fractions, ``times`` s; NaN: not aimed/reached)."""
    aimed = [(t, s) for t, s in zip(targets, times, strict=True) if math.isfinite(t)]
    if len({t for t, _ in aimed}) != 1:  # no target, or several: times to different targets never pool
        return {"target_acc": math.nan, "target_reached": math.nan, "time_to_target_median": math.nan,
                "time_to_target_olympic": math.nan}  # fmt: skip
    seconds = sorted(s if math.isfinite(s) else math.inf for _, s in aimed)  # a miss is infinitely slow
    median = statistics.median(seconds)
    # MLPerf's olympic mean (accuracy_stats.olympic_mean): the fastest and the slowest dropped, a miss among them.
    olympic = statistics.fmean(seconds[1:-1]) if len(seconds) >= OLYMPIC_MIN_RUNS else math.inf
    return {
        "target_acc": 100 * aimed[0][0],
        "target_reached": sum(math.isfinite(s) for s in seconds),
        "time_to_target_median": median if math.isfinite(median) else math.nan,
        "time_to_target_olympic": olympic if math.isfinite(olympic) else math.nan,
    }


def across_seeds(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per group of ``keys`` (as ``report.summarize`` groups): the accuracy and time-to-target columns."""
    import pandas as pd

    grouped = runs.assign(**{k: runs[k].astype(str) for k in keys}).groupby(keys, sort=True, dropna=False)
    accuracy = grouped["test_accuracy_pct"].agg(list)
    frame = pd.DataFrame([accuracy_summary(v) for v in accuracy], index=accuracy.index)
    if "target_acc" in runs.columns and runs["target_acc"].notna().any():
        targets, times = grouped["target_acc"].agg(list), grouped["time_to_target_s"].agg(list)
        rows = [target_summary(t, s) for t, s in zip(targets, times, strict=True)]
        frame = frame.join(pd.DataFrame(rows, index=targets.index))
    return frame
