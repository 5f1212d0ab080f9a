"""The gate on instruction counts (``run --measure instructions``), used when both sides of a pair have them.

A training step's instruction count under callgrind does not wander as its time does: the same work
counts the same to within 0.01% (see ``training/callgrind.py``). So there is no test of significance
here: the pair is a regression when the current median count per step is more than
``--max-instructions-increase`` (1%) above the baseline's. Repeated runs serve only to confirm that the
counts are as steady as they should be: the spread each side showed is reported beside the verdict, and
a spread that is not small beside the threshold is said to be one (the counts are then not reproducible
on that machine, and the verdict is not to be trusted).

What counts miss: a change that costs cache misses, memory stalls or waiting on other threads, or that
runs the same instructions slower (see docs/comparing.md). Timed runs gate on those.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .defaults import DEFAULT_MAX_INSTRUCTIONS_INCREASE

if TYPE_CHECKING:
    import pandas as pd

#: The default threshold: a fraction of the baseline's instructions per step.
DEFAULT_MAX_INCREASE = DEFAULT_MAX_INSTRUCTIONS_INCREASE
#: A side whose counts spread by more than this share of the threshold is not steady enough to gate on.
STEADY_SHARE = 0.25
PER_STEP, PER_IMAGE = "instructions_per_step", "instructions_per_eval_image"
METHOD = ("instructions: callgrind counts per training step (run --measure instructions), median current over "
          "median baseline against a plain threshold; repeats only confirm the spread")  # fmt: skip


@dataclass(frozen=True)
class InstructionJudgement:
    """What the counts of one pair say: the per-step medians, their ratio, and the spread each side showed."""

    baseline_per_step: float  # median over the side's runs
    current_per_step: float
    ratio: float  # current / baseline
    baseline_runs: int
    current_runs: int
    baseline_spread: float | None  # (max - min) / median over the side's runs; None with one run
    current_spread: float | None
    max_increase: float
    eval_ratio: float | None = None  # the same for instructions per evaluated image, where both sides have it

    @property
    def regression(self) -> bool:
        return self.ratio - 1 > self.max_increase

    @property
    def steady(self) -> bool:
        """Both sides' spreads small beside the threshold (unknown spreads count as steady: nothing says not)."""
        limit = STEADY_SHARE * self.max_increase
        return all(s is None or s <= limit for s in (self.baseline_spread, self.current_spread))


def counted(baseline: pd.DataFrame, current: pd.DataFrame) -> bool:
    """Whether both sides' ok runs have instruction counts: the pair is then judged on them."""
    return bool(_values(baseline, PER_STEP)) and bool(_values(current, PER_STEP))


def judge(baseline: pd.DataFrame, current: pd.DataFrame, max_increase: float) -> InstructionJudgement:
    """The counts of both sides' ok runs, judged against ``max_increase``."""
    b, c = _values(baseline, PER_STEP), _values(current, PER_STEP)
    b_eval, c_eval = _values(baseline, PER_IMAGE), _values(current, PER_IMAGE)
    b_med, c_med = statistics.median(b), statistics.median(c)
    eval_ratio = statistics.median(c_eval) / statistics.median(b_eval) if b_eval and c_eval else None
    return InstructionJudgement(b_med, c_med, c_med / b_med, len(b), len(c), spread(b), spread(c), max_increase,
                                eval_ratio)  # fmt: skip


def describe(judgement: InstructionJudgement) -> tuple[list[str], list[str]]:
    """(regressions, other reasons) in words, each naming the method and the spread seen."""
    j = judgement
    change = f"{_signed(j.ratio - 1)} instructions per step"
    if j.eval_ratio is not None:
        change += f" ({_signed(j.eval_ratio - 1)} per evaluated image)"
    spreads = f"spread over runs: baseline {_spread_text(j.baseline_spread, j.baseline_runs)}, current " \
              f"{_spread_text(j.current_spread, j.current_runs)}"  # fmt: skip
    reasons = [spreads]
    if not j.steady:
        reasons.append(f"counts spread by more than {STEADY_SHARE:.0%} of the {j.max_increase:.2%} threshold: "
                       "not reproducible here (a thread or timer in the counted run?); doubtful")  # fmt: skip
    if j.regression:
        return [f"{change}, above the {j.max_increase:.2%} allowed"], reasons
    return [], [change, *reasons]


def verdict(judgement: InstructionJudgement) -> str:
    """regression, ok, or faster (fewer instructions by more than the threshold)."""
    if judgement.regression:
        return "regression"
    return "faster" if 1 - judgement.ratio > judgement.max_increase else "ok"


def cells(judgement: InstructionJudgement | None) -> dict[str, str]:
    """The table's instruction columns for one pair (dashes when it was not judged on counts)."""
    if judgement is None:
        return {"baseline instr/step": "–", "current instr/step": "–", "instr Δ": "–"}
    return {"baseline instr/step": f"{judgement.baseline_per_step:,.0f}",
            "current instr/step": f"{judgement.current_per_step:,.0f}",
            "instr Δ": _signed(judgement.ratio - 1)}  # fmt: skip


def rule(max_increase: float) -> str:
    """How pairs with counts were judged, for the end of a report."""
    return (f"Pairs with instruction counts on both sides are judged on them instead of time: a regression when "
            f"the current median instructions per step exceed the baseline's by more than {max_increase:.2%} "
            f"(method: {METHOD}).")  # fmt: skip


def fields(judgement: InstructionJudgement | None) -> dict[str, Any] | None:
    """The JSON form of a judgement, with its verdict and the method."""
    if judgement is None:
        return None
    return {**judgement.__dict__, "increase": judgement.ratio - 1, "regression": judgement.regression,
            "steady": judgement.steady, "method": METHOD}  # fmt: skip


def spread(values: list[float]) -> float | None:
    """(max - min) / median: the whole range, as counts should not vary at all; None for fewer than two."""
    if len(values) < 2:
        return None
    return (max(values) - min(values)) / statistics.median(values)


def _values(runs: pd.DataFrame, column: str) -> list[float]:
    if column not in runs:
        return []
    return [float(v) for v in runs[column] if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]


def _signed(change: float) -> str:
    return f"{change * 100:+.3f}%"


def _spread_text(value: float | None, runs: int) -> str:
    if value is None:
        return f"unknown ({runs} run{'s' if runs != 1 else ''}; repeat to confirm)"
    return f"{value * 100:.4f}% ({runs} runs)"
