"""Change points in a benchmark's history: where a series of runs moved to a new level, and by how much.

The method is Apache Otava's (formerly DataStax's Hunter; Fleming et al. 2023): E-Divisive means
(Matteson and James, 2014) proposes where a series splits, and Student's t-test decides whether the split
is real, fitted to what a cifar-bench series is: every run of 10-100 commits, a few runs a commit, and
timing noise from a shared VM, mostly shared by the runs of one invocation. The measurements behind each
choice are ``benchmarks/changepoint_accuracy.py``'s (tables in docs/publishing.md).

* **Every run proposes; splits only between groups.** E-Divisive's Q(τ, κ) (``edivisive``) over the ranks
  of every run, oldest first, each with its group (its commit, or a label of its own for a run without
  one): a change point falls only between groups, since a commit cannot be half slow; ranks, so that one
  run or commit three times slower is just the top ranks. κ bounds a stretch that later went back (a
  regression, then its fix), so that it is compared with what came before it, not with a mix of both.
* **A commit is one observation.** The runs of one invocation share most of their noise on this machine
  (intra-class correlation of log train time 0.72-0.97): counting them as independent reads a commit
  that ran beside a busy neighbour as a change (a fifth to a half of flat synthetic histories got one).
  So the test compares the commits' medians (of log times for times and throughput), one value each.
* **Student's t-test, not shuffles.** The phase before this one shuffled whole commits (Matteson and
  James's permutation test), which is valid whatever the noise but can never be more sure than one in
  the number of ways to place the commits: 5 slow commits among 10 give p >= 1 / C(10, 5) = 1 / 252, so a
  short history could never reach 0.001. The t-test's p-value has no such floor: at the measured quiet
  commit-to-commit spread (log-normal, 1.9%), 5% steps in 20 commits x 3 runs are found with F1 0.90
  against 0.58 for the shuffles, and 10% steps in all 50. It does not pay for having picked the best split
  (neither does Otava's); the false alarms this costs are measured instead: 1 flat history in 200.
  Its weakness is heavy tails: at the measured quiet noise drawn as it came (10 invocations, one of them
  1.63 x the others), a slow commit in most histories swamps the t-test's variance and F1 for 5% steps
  falls to 0.11 (shuffles 0.15); neither method meets the targets there. ``method="permutation"`` keeps
  the shuffles for long histories with such spikes.
* **Two passes, as Otava.** Binary segmentation keeps every split its t-test finds at 10 x the level
  (``WEAK_FACTOR``: Otava's "weak" change points, so that a second change is not missed because the
  first muddied its segment); then the weakest split, tested against its neighbouring splits, is dropped
  until every one left is significant at the level.
* **Significance level 0.001** (Otava's and Nyrkiö's default ``max_pvalue``): with it, 1 in 200 flat
  histories got a change point; at 0.0001, none, but 5% steps fell to F1 0.76.
* **Minimum segment, 3 commits** each side: one commit slowed by a neighbour is not a level, and at the
  measured noise two slow commits in a row are not rare: with 2, 8 of 200 flat histories got a change
  point, with 3, 1 (at normal noise of the same spread, 1 either way and F1 0.88 against 0.90). The
  price: a change in the newest two commits is not reported yet (``compare`` and the adjacent-commit
  verdicts still see it).

**Counts are read otherwise** (``run --measure instructions``; ``MEASURES["instructions_per_step"]``). They
have no slow neighbours, only small moves with the counted process's memory layout (up to 0.068% measured), so
E-Divisive proposes on their values, not ranks (to ranks a 0.05% move and a 3% change look alike), and a
change under their resolution (``COUNT_RESOLUTION``, 0.2%) is not reported however significant.

**Where it could have begun.** Each split is refined between its neighbouring change points (E-Divisive's
best single split of that window, kept if the t-test still finds it there); ``earliest``..``latest`` runs
over the groups next to it whose level the data cannot tell: those before it not clearly at the old
level, those from it not clearly at the new one. A clean step gives one commit; a blurred step or a
drift, or a step small beside the noise, several.

**How much.** ``before`` and ``after`` are the medians of the runs of the neighbouring segments;
``magnitude`` is the difference of the commits' mean (log) medians either side, the t-test's own estimate
(a ratio after / before for times), with its 95% t interval. With ``method="permutation"`` it is the
Hodges-Lehmann shift with the distribution-free interval from the Mann-Whitney critical values, as
``compare`` uses for two commits.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Literal

import numpy as np

from . import stats
from .defaults import ALPHA, METHODS, MIN_SEGMENT, Method
from .edivisive import MIN_RUNS, Unit, best_single_split, candidate, permutation_p_value
from .tdist import TTest, student_t_test

#: The t-test's first pass keeps candidates up to this many times ``ALPHA`` (Otava's "weak" change points);
#: the merge pass then drops the weakest until every one left is significant at ``ALPHA`` against its neighbours.
WEAK_FACTOR = 10
#: Shuffles per test of the permutation method: with 999, the smallest p-value is 1 / 1000, just ``ALPHA``.
PERMUTATIONS = 999
#: A group is at a level when its median is within this many commit-to-commit spreads of it (about 95%)...
LOCATION_Z = 2.0
#: ... or within this share of the step: a group a quarter of the way across is not yet "in between".
LOCATION_SHARE = 0.25
#: Median absolute deviation to standard deviation, for normal noise.
MAD_TO_SD = 1.4826
#: Confidence of the magnitude's interval. Above compare's 0.90 because the segments were chosen by the data,
#: which makes an interval computed as if they had been fixed in advance somewhat too narrow.
MAGNITUDE_CONFIDENCE = 0.95
#: Above this many (before, after) pairs the exact Mann-Whitney distribution gives way to the normal one (as compare's).
EXACT_PAIRS = stats.EXACT_LIMIT
#: Relative slack when comparing a p-value with a level (floating-point sums of the same numbers in another order).
SLACK = 1e-9

Direction = Literal["up", "down"]

__all__ = [
    "ALPHA",
    "MEASURES",
    "MIN_RUNS",
    "MIN_SEGMENT",
    "ChangePoint",
    "Measure",
    "detect",
    "is_regression",
    "shift_estimate",
]  # fmt: skip


@dataclass(frozen=True)
class ChangePoint:
    """A change of level in a series, beginning at ``group``.

    ``magnitude``, ``low`` and ``high`` are a ratio after / before when ``relative`` (times, throughput),
    otherwise a difference after - before in the series' units (accuracy points); ``low``/``high`` are
    None when too few values allow an interval at ``MAGNITUDE_CONFIDENCE``.
    """

    group: Hashable  # the first group at the new level
    index: int  # position in the series of the first value at the new level
    earliest: Hashable  # the range of groups the change could have begun in, oldest first
    latest: Hashable
    before: float  # median of the runs of the segment before, in the series' units
    after: float  # median of the runs of the segment after
    magnitude: float
    low: float | None
    high: float | None
    p_value: float  # of the test that kept it: see ``method``
    direction: Direction  # "up": the values rose (slower, for times)
    relative: bool
    method: Method = "t"  # "t": two-sided Student's t-test of the segments; "permutation": shuffles of E-Divisive's Q


@dataclass(frozen=True)
class _Series:
    """Values on the scale tested (logs when relative), and where each group begins."""

    x: np.ndarray
    labels: list[Hashable]
    starts: np.ndarray  # run index where each group begins, then the number of runs (length groups + 1)
    ranks: bool = True  # whether E-Divisive proposes on ranks (times) or on values (counts)


def detect(values: Sequence[float], groups: Sequence[Hashable], *, method: Method = "t",
           min_segment: int = MIN_SEGMENT, alpha: float = ALPHA, permutations: int = PERMUTATIONS, seed: int = 0,
           relative: bool = True, unit: Unit = "groups", min_change: float = 0.0,
           ranks: bool = True) -> list[ChangePoint]:  # fmt: skip
    """The change points of a series, oldest first; the same list for the same inputs (and seed).

    ``values``: every run, in series order (oldest first). ``groups``: per value, its group (a commit hash,
    or a label of its own for a run without one); the runs of a group must be contiguous. ``relative``:
    compare as ratios (times, throughput; values must be positive) rather than differences (accuracy).
    ``method``: how a candidate is judged: "t" (a t-test of the groups' medians, split then merge, as
    Otava does) or "permutation" (shuffles of E-Divisive's statistic; ``permutations`` and ``seed``).
    ``unit``: what counts as one observation: whole groups (the default: valid when the runs of one
    commit share its machine's mood), or single runs (only for runs that are independent of each other).
    ``min_change``: the smallest change reported, however significant (a fraction when ``relative``, else in
    the series' units): a measure's resolution, for counts whose levels move a little with the process's
    memory layout (``MEASURES[...].resolution``); 0 reports every significant change. ``ranks``: E-Divisive
    proposes splits on the runs' ranks (robust to a run or commit slowed by a neighbour: times), or on their
    values (measures without such outliers, where a small move and a large change must not look alike: counts).
    """
    if min_change < 0:
        raise ValueError(f"min_change must be >= 0, got {min_change}")
    if min_segment < 1:
        raise ValueError(f"min_segment must be at least 1 group, got {min_segment}")
    if unit not in ("groups", "runs"):
        raise ValueError(f"unit must be 'groups' or 'runs', got {unit!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    series = replace(_prepare(values, groups, relative), ranks=ranks)
    raw = np.asarray(values, dtype=float)
    smallest = math.log1p(min_change) if relative else min_change  # on the tested scale
    if method == "t":
        splits = _merge(series, _split(series, min_segment, alpha, unit), alpha, unit, smallest)
        return _t_points(series, raw, splits, min_segment, alpha, relative, unit)
    found = _permutation_segmentation(series, min_segment, alpha, permutations, seed, unit)
    found = [f for f in found if abs(_rank_shift(series, *_bounds(found, f, len(series.labels)), unit)[0]) >= smallest]
    ends = [split for split, _ in found[1:]] + [len(series.labels)] if found else []
    points, first = [], 0
    for (_, p_value), end in zip(found, ends, strict=True):
        # Refined between the change before it (already refined, so that two never cross) and the one after.
        split, earliest, latest = _locate(series, first, end, min_segment)
        shift = _rank_shift(series, first, split, end, unit)
        points.append(_describe(series, raw, (first, split, end), (earliest, latest), shift, p_value, relative,
                                "permutation"))  # fmt: skip
        first = split
    return points


def _bounds(found: list[tuple[int, float]], split: tuple[int, float], groups: int) -> tuple[int, int, int]:
    """A found split with the splits either side of it (or the series' ends): (first, split, end)."""
    at = found.index(split)
    first = found[at - 1][0] if at > 0 else 0
    end = found[at + 1][0] if at + 1 < len(found) else groups
    return first, split[0], end


def _prepare(values: Sequence[float], groups: Sequence[Hashable], relative: bool) -> _Series:
    """Check the inputs and find where each group begins; a group that comes back after another is refused."""
    if len(values) != len(groups):
        raise ValueError(f"{len(values)} values but {len(groups)} groups")
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise ValueError("values must be a sequence of finite numbers")
    if relative:
        if np.any(x <= 0):
            raise ValueError("relative=True compares ratios: values must be positive")
        x = np.log(x)
    labels: list[Hashable] = []
    starts: list[int] = []
    seen: set[Hashable] = set()
    for i, group in enumerate(groups):
        if i == 0 or group != groups[i - 1]:
            if group in seen:
                raise ValueError(f"the runs of group {group!r} are not contiguous")
            seen.add(group)
            labels.append(group)
            starts.append(i)
    return _Series(x, labels, np.array([*starts, len(x)]))


def _window(series: _Series, first: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """The runs of groups first..end-1, and where each of those groups begins among them (then their count)."""
    return series.x[series.starts[first] : series.starts[end]], series.starts[first : end + 1] - series.starts[first]


# -- the t-test: split, then merge (Otava's two passes) ------------------------------------------------


def _values(series: _Series, first: int, end: int, unit: Unit) -> list[float]:
    """What the t-test compares for groups first..end-1: each group's median, or every run when runs are the unit."""
    if unit == "runs":
        return [float(v) for v in series.x[series.starts[first] : series.starts[end]]]
    return [float(np.median(series.x[a:b])) for a, b in itertools.pairwise(series.starts[first : end + 1])]


def _t_test(series: _Series, first: int, split: int, end: int, unit: Unit) -> TTest:
    """Groups first..split-1 against split..end-1 (p = 1 with fewer than three values in all: nothing to judge)."""
    before, after = _values(series, first, split, unit), _values(series, split, end, unit)
    if len(before) + len(after) < 3:
        return TTest(float(np.mean(after) - np.mean(before)), math.inf, 1, 1.0)
    return student_t_test(before, after)


def _significant(p_value: float, alpha: float) -> bool:
    return p_value <= alpha * (1 + SLACK)


def _split(series: _Series, min_segment: int, alpha: float, unit: Unit) -> list[int]:
    """Binary segmentation: E-Divisive's best split of each segment, kept when a t-test finds it at
    ``WEAK_FACTOR`` x ``alpha``; the test compares the groups before τ with those from τ to κ (κ bounds a
    stretch that later went back, so that it is not compared with a mix of both levels)."""
    found: list[int] = []
    todo = [(0, len(series.labels))]
    while todo:
        first, end = todo.pop()
        best = candidate(*_window(series, first, end), min_segment, series.ranks)
        if best is None:
            continue
        tau, kappa = first + best[0], first + best[1]
        if _significant(_t_test(series, first, tau, kappa, unit).p_value, alpha * WEAK_FACTOR):
            found.append(tau)
            todo += [(first, tau), (tau, end)]
    return sorted(found)


def _merge(series: _Series, splits: list[int], alpha: float, unit: Unit, smallest: float = 0.0) -> list[int]:
    """Drop the weakest split (largest p against its neighbouring splits) until all are significant at ``alpha``.

    A split whose change is below ``smallest`` (on the tested scale) is weakest of all, whatever its p-value: it
    is dropped first, and its neighbours are then tested across it.
    """
    splits = list(splits)
    while splits:
        bounds = [0, *splits, len(series.labels)]
        tests = [_t_test(series, *bounds[i : i + 3], unit) for i in range(len(splits))]
        p_values = [math.inf if abs(t.difference) < smallest else t.p_value for t in tests]
        weakest = int(np.argmax(p_values))
        if _significant(p_values[weakest], alpha):
            break
        del splits[weakest]
    return splits


def _t_points(series: _Series, raw: np.ndarray, splits: list[int], min_segment: int, alpha: float,
              relative: bool, unit: Unit) -> list[ChangePoint]:  # fmt: skip
    """Each split refined between its neighbours (``_locate``), tested there, and described.

    The refined place is kept only when the test still finds the change there; otherwise the split as found.
    """
    points, first = [], 0
    for split, end in zip(splits, [*splits[1:], len(series.labels)][: len(splits)], strict=True):
        refined, earliest, latest = _locate(series, first, end, min_segment)
        test = _t_test(series, first, refined, end, unit)
        if refined != split and not _significant(test.p_value, alpha):
            refined, earliest, latest = split, min(earliest, split), max(latest, split)
            test = _t_test(series, first, split, end, unit)
        low, high = test.interval(MAGNITUDE_CONFIDENCE)
        points.append(_describe(series, raw, (first, refined, end), (earliest, latest), (test.difference, low, high),
                                test.p_value, relative, "t"))  # fmt: skip
        first = refined
    return points


# -- the permutation test ------------------------------------------------------------------------------


def _permutation_segmentation(series: _Series, min_segment: int, alpha: float, permutations: int, seed: int,
                              unit: Unit) -> list[tuple[int, float]]:  # fmt: skip
    """Significant splits as (group index, p-value), in series order.

    Each segment is tested on its own, with a generator seeded by the seed and the segment's bounds, so
    that the result does not depend on the order in which segments are visited.
    """
    found: list[tuple[int, float]] = []
    todo = [(0, len(series.labels))]
    while todo:
        first, end = todo.pop()
        window, starts = _window(series, first, end)
        best = candidate(window, starts, min_segment, series.ranks)
        if best is None:
            continue
        tau, _, q, ranks = best
        rng = np.random.default_rng([seed, first, end])
        p_value = permutation_p_value(ranks, starts, q, min_segment=min_segment, unit=unit, alpha=alpha,
                                      permutations=permutations, rng=rng)  # fmt: skip
        if _significant(p_value, alpha):
            found.append((first + tau, p_value))
            todo += [(first, first + tau), (first + tau, end)]
    return sorted(found)


def _rank_shift(
    series: _Series, first: int, split: int, end: int, unit: Unit
) -> tuple[float, float | None, float | None]:
    """The Hodges-Lehmann shift at ``split`` with its rank interval: from the groups' medians (groups the unit:
    the runs of one commit share its noise, so counting them as independent would make the interval too
    narrow) or from the runs."""
    before, after = _values(series, first, split, unit), _values(series, split, end, unit)
    return shift_estimate(before, after)


# -- describing a change point -------------------------------------------------------------------------


def _locate(series: _Series, first: int, end: int, min_segment: int) -> tuple[int, int, int]:
    """The best single split of groups first..end-1 (which hold this change and no other), and its range.

    The range runs over the groups next to the split whose level cannot be told: scanning back from the
    split, every group that is not clearly at the old level (near the old median and not the new one);
    forward, every group not clearly at the new level. Near: within ``LOCATION_Z`` commit-to-commit spreads
    (the median absolute deviation of the groups' medians from their side's median, which a few groups
    caught half-way do not inflate) or ``LOCATION_SHARE`` of the step, whichever is wider. A clean step
    gives one group; a blurred one, or a step small beside the noise, several. As (split, earliest, latest).
    """
    window, starts = _window(series, first, end)
    best = best_single_split(window, starts, min_segment, series.ranks)
    medians = np.array([np.median(window[a:b]) for a, b in itertools.pairwise(starts)])
    old, new = np.median(window[: starts[best]]), np.median(window[starts[best] :])
    fitted = np.where(np.arange(len(medians)) < best, old, new)
    spread = MAD_TO_SD * float(np.median(np.abs(medians - fitted)))
    reach = max(LOCATION_Z * spread, LOCATION_SHARE * abs(new - old))
    near_old, near_new = np.abs(medians - old) <= reach, np.abs(medians - new) <= reach
    clearly_old, clearly_new = near_old & ~near_new, near_new & ~near_old
    earliest, latest = best, best
    while earliest > 0 and not clearly_old[earliest - 1]:
        earliest -= 1
    while latest < len(medians) - 1 and not clearly_new[latest]:
        latest += 1
    return first + best, first + earliest, first + latest


def _describe(series: _Series, raw: np.ndarray, bounds: tuple[int, int, int], span: tuple[int, int],
              shift: tuple[float, float | None, float | None], p_value: float, relative: bool,
              method: Method) -> ChangePoint:  # fmt: skip
    """A change point at ``split`` between groups ``first`` and ``end`` (``bounds``), with ``shift`` (estimate,
    low, high on the tested scale: log ratios when relative) and the range ``span`` it could have begun in."""
    first, split, end = bounds
    lo, at, hi = series.starts[first], series.starts[split], series.starts[end]
    estimate, low, high = shift
    before, after = float(np.median(raw[lo:at])), float(np.median(raw[at:hi]))
    rose = estimate > 0 or (estimate == 0 and after >= before)
    if relative:
        estimate, low, high = math.exp(estimate), _exp(low), _exp(high)
    return ChangePoint(
        group=series.labels[split],
        index=int(at),
        earliest=series.labels[span[0]],
        latest=series.labels[span[1]],
        before=before,
        after=after,
        magnitude=estimate,
        low=low,
        high=high,
        p_value=p_value,
        direction="up" if rose else "down",
        relative=relative,
        method=method,
    )


def _exp(value: float | None) -> float | None:
    return None if value is None else math.exp(value)


# -- the size of a shift ------------------------------------------------------------------------------


def shift_estimate(before: Sequence[float] | np.ndarray, after: Sequence[float] | np.ndarray,
                   confidence: float = MAGNITUDE_CONFIDENCE) -> tuple[float, float | None, float | None]:  # fmt: skip
    """Hodges-Lehmann shift after - before, with its distribution-free interval (None, None when too few values).

    The estimate is the median of all pairwise differences; the interval's ends are the order statistics of
    those differences cut at the Mann-Whitney critical values, as ``compare`` does for ratios (pass logs to
    get a log ratio).
    """
    b, a = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if len(b) == 0 or len(a) == 0:
        raise ValueError("a shift needs values on both sides")
    diffs = np.sort((a[:, None] - b[None, :]).ravel())
    estimate = float(np.median(diffs))
    k = _critical_rank(len(b), len(a), (1 - confidence) / 2)
    if k < 1:
        return estimate, None, None
    return estimate, float(diffs[k - 1]), float(diffs[len(diffs) - k])


def _critical_rank(n: int, m: int, tail: float) -> int:
    """The largest k with P(U <= k - 1) <= tail under no shift (0: no interval reaches that confidence)."""
    if n * m > EXACT_PAIRS:
        mean, sd = n * m / 2, math.sqrt(n * m * (n + m + 1) / 12)
        return max(0, math.floor(mean + NormalDist().inv_cdf(tail) * sd + 0.5))
    total = math.comb(n + m, n)
    cumulative = itertools.accumulate(stats.u_null_counts(n, m))  # exact integers: no rounding at the tail
    return sum(1 for count in cumulative if count / total <= tail * (1 + SLACK))


# -- is it a regression? -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """How to read a measure's change points: which way is worse, whether it is compared as a ratio, and the
    smallest change it can show (``detect``'s ``min_change``)."""

    worse: Direction
    relative: bool
    resolution: float = 0.0
    ranks: bool = True  # E-Divisive on ranks (times: robust to outliers) or values (counts: sizes matter)


#: The smallest change in instructions per step reported (a fraction). A count does not wander, but it moves a
#: little with the counted process's memory layout: the same step counted up to 0.068% apart with only the
#: results folder's name changed (benchmarks/instructions_gate.py). Changes under about three times that are
#: not told from such a move; a change point of counts must be larger to be listed.
COUNT_RESOLUTION = 0.002


#: The measures searched for change points, by their field name in a run's row. Instructions per step are
#: those of counted runs (``run --measure instructions``), whose times are valgrind's and are not searched.
MEASURES = {
    "train_s": Measure(worse="up", relative=True),
    "train_img_s": Measure(worse="down", relative=True),
    "test_accuracy_pct": Measure(worse="down", relative=False),
    "instructions_per_step": Measure(worse="up", relative=True, resolution=COUNT_RESOLUTION, ranks=False),
}
#: The measures that are times: not searched in a series of counted runs (valgrind's times say nothing).
TIMED = ("train_s", "train_img_s")
COUNTED = "instructions_per_step"


def is_regression(point: ChangePoint, *, worse: Direction, threshold: float) -> bool:
    """Whether a change point is a change for the worse beyond ``threshold``, with an interval that excludes none.

    ``worse``: "up" for times, "down" for throughput and accuracy. ``threshold``: for a relative point a
    fraction of slowdown, read the same way both ways (0.10: a ratio above 1.10 going up, below 1 / 1.10
    going down, so 10% slower in seconds and in images/s agree); for an absolute point a difference in the
    series' units (accuracy points; 0 means any drop). The interval must also lie wholly on the worse side
    of no change: a change point that is only a change of spread is not a regression.
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if point.direction != worse:
        return False
    none = 1.0 if point.relative else 0.0
    if point.relative:
        limit = 1 + threshold if worse == "up" else 1 / (1 + threshold)
    else:
        limit = threshold if worse == "up" else -threshold
    if worse == "up":
        return point.magnitude > limit and point.low is not None and point.low > none
    return point.magnitude < limit and point.high is not None and point.high < none
