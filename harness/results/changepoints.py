"""Change points in a benchmark's history: where a series of runs moved to a new level, and by how much.

The method is E-Divisive with means (Matteson and James, 2014), which Apache Otava (formerly DataStax's
Hunter), MongoDB's signal-processing-algorithms and Nyrkiö run over performance histories, fitted to what
a cifar-bench series is: every run of 10-100 commits, a few runs a commit, and timing noise from a shared
VM that is heavy-tailed and mostly shared by the runs of one invocation.

* **Every run; splits only between groups.** The input is each run's value, oldest first, with its group
  (its commit, or a label of its own for a run without one). A change point only falls between groups: a
  commit cannot be half slow.
* **The statistic.** E-Divisive's Q(τ, κ): n1 n2 / (n1 + n2) times the energy distance (exponent 1)
  between the runs before the split τ and those from τ to κ, maximised over both. The split is τ; κ lets
  a stretch that later went back (a regression, then its fix) be compared with what came before it rather
  than with a mix of both levels. It is computed on the ranks of the segment's runs, so a run or a whole
  commit three times slower is just the top ranks and cannot outweigh a real shift, as it does on raw
  times. Binary segmentation repeats the search on each side of every change point found.
* **Whether it is real: commits are shuffled, not runs.** The p-value is the share of shuffles whose best
  Q reaches the observed one (Matteson and James's permutation test: it pays for having picked the best
  split, which a t-test on the chosen split, Hunter's faster variant, does not, and assumes no shape of
  noise). On this machine (``benchmarks/changepoint_accuracy.py``) the runs of one invocation share most
  of their noise: their train times agree within 1-3% (IQR / median) while invocations differ by 3%
  (quiet) to 27-55% (loaded), an intra-class correlation of log train time of 0.72-0.97. Shuffling runs
  reads a commit that ran beside a busy neighbour as a change (a quarter to a third of flat synthetic
  histories of that noise got one); shuffling whole commits, each keeping its runs, is valid whatever they
  share, and none of 50 got one. The price: a commit is one piece of evidence, not three, and k commits at
  a new level among g can reach no better than about p = 1 / C(g, k).
  ``unit="runs"`` is for series whose runs are independent.
* **Significance level 0.001** (Otava's and Nyrkiö's default ``max_pvalue``) with 999 shuffles: no
  shuffle may do as well. The p-value being honest about the choice of split, a flat series gets a change
  point with probability 0.001 per measure; ``publish`` tests three measures of every series, and at 0.001
  a site of 50 flat series shows a false mark about one build in seven (at 0.01, most builds). A test stops
  at the first shuffle that beats the observed Q, so a flat series costs a few dozen shuffles.
* **Minimum segment, 2 commits** (and 2 runs) each side: one commit slowed by a neighbour is not a level,
  two in a row at the same new level may be. asv reports a regression only when it lasts 2 commits
  (``min_size=2``) for the same reason; Otava has no minimum but a t-test needs 2 points a side.

**Where it could have begun.** The split is refined between the neighbouring change points (the best
single split of that window); ``earliest``..``latest`` then runs over the groups next to it whose level the
data cannot tell: those before it not clearly at the old level, those from it not clearly at the new one.
A clean step gives one commit; a blurred step or a drift, or a step small beside the noise, several.

**How much.** ``before`` and ``after`` are the medians of the neighbouring segments; ``magnitude`` is the
Hodges-Lehmann shift between the commits' medians on either side (for times a ratio after / before, from
log times), with the distribution-free interval from the Mann-Whitney critical values that ``compare``
uses for two commits; from the runs themselves when runs are the unit.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

from . import stats

#: Groups (commits) each side of a change point must hold, at least.
MIN_SEGMENT = 2
#: Runs each side must hold, at least: the mean distance within one run is undefined.
MIN_RUNS = 2
#: Significance level of the permutation test (Otava's and Nyrkiö's default).
ALPHA = 0.001
#: Shuffles per test: with 999, the smallest p-value is 1 / 1000, just ``ALPHA``.
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
#: Relative slack when comparing statistics and levels (floating-point sums of the same numbers in another order).
SLACK = 1e-9

Direction = Literal["up", "down"]
Unit = Literal["groups", "runs"]


@dataclass(frozen=True)
class ChangePoint:
    """A change of level in a series, beginning at ``group``.

    ``magnitude``, ``low`` and ``high`` are a ratio after / before when ``relative`` (times, throughput),
    otherwise a difference after - before in the series' units (accuracy points); ``low``/``high`` are
    None when too few runs allow an interval at ``MAGNITUDE_CONFIDENCE``.
    """

    group: Hashable  # the first group at the new level
    index: int  # position in the series of the first value at the new level
    earliest: Hashable  # the range of groups the change could have begun in, oldest first
    latest: Hashable
    before: float  # median of the segment before, in the series' units
    after: float  # median of the segment after
    magnitude: float
    low: float | None
    high: float | None
    p_value: float  # permutation p-value of the test that found it (at least 1 / (permutations + 1))
    direction: Direction  # "up": the values rose (slower, for times)
    relative: bool


@dataclass(frozen=True)
class _Series:
    """Values on the scale tested (logs when relative), and where each group begins."""

    x: np.ndarray
    labels: list[Hashable]
    starts: np.ndarray  # run index where each group begins, then the number of runs (length groups + 1)


def detect(values: Sequence[float], groups: Sequence[Hashable], *, min_segment: int = MIN_SEGMENT,
           alpha: float = ALPHA, permutations: int = PERMUTATIONS, seed: int = 0, relative: bool = True,
           unit: Unit = "groups") -> list[ChangePoint]:  # fmt: skip
    """The change points of a series, oldest first; the same list for the same inputs and seed.

    ``values``: every run, in series order (oldest first). ``groups``: per value, its group (a commit hash,
    or a label of its own for a run without one); the runs of a group must be contiguous. ``relative``:
    compare as ratios (times, throughput; values must be positive) rather than differences (accuracy).
    ``unit``: what the permutation test shuffles: whole groups (the default: valid when the runs of one
    commit share its machine's mood), or single runs (only for runs that are independent of each other).
    """
    if min_segment < 1:
        raise ValueError(f"min_segment must be at least 1 group, got {min_segment}")
    if unit not in ("groups", "runs"):
        raise ValueError(f"unit must be 'groups' or 'runs', got {unit!r}")
    series = _prepare(values, groups, relative)
    found = _binary_segmentation(series, min_segment, alpha, permutations, seed, unit)
    ends = [split for split, _ in found[1:]] + [len(series.labels)] if found else []
    raw = np.asarray(values, dtype=float)
    points, first = [], 0
    for (_, p_value), end in zip(found, ends, strict=True):
        # Refined between the change before it (already refined, so that two never cross) and the one after.
        split, earliest, latest = _locate(series, first, end, min_segment)
        points.append(_describe(series, raw, first, split, end, (earliest, latest), p_value, relative, unit))
        first = split
    return points


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


# -- the energy statistic -----------------------------------------------------------------------------
#
# Everything is computed from group-to-group sums: between[a, b] is the sum of |x_i - x_j| over the runs i of
# group a and j of group b. Shuffling whole groups then only reorders that matrix. Leading axes hold a batch
# of shuffles.

#: Floats held at once by a batch of shuffles (each needs n² of them, n runs or groups): about 32 MB.
BATCH_FLOATS = 4_000_000


def _batch_size(n: int) -> int:
    return max(1, min(64, BATCH_FLOATS // max(1, n * n)))


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2)[inverse]


def _between(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of |x_i - x_j| between the runs of each pair of groups, from run values (shape (..., n))."""
    d = np.abs(x[..., :, None] - x[..., None, :])
    return np.add.reduceat(np.add.reduceat(d, starts[:-1], axis=-2), starts[:-1], axis=-1)


def _cumsum0(x: np.ndarray) -> np.ndarray:
    """Running sums along the last axis, from 0: out[..., k] is the sum of the first k entries."""
    out = np.zeros((*x.shape[:-1], x.shape[-1] + 1))
    out[..., 1:] = x.cumsum(axis=-1)
    return out


def _energy_q(cross: np.ndarray, within_1: np.ndarray, within_2: np.ndarray, n1: np.ndarray,
              n2: np.ndarray) -> np.ndarray:  # fmt: skip
    """E-Divisive's Q: ``n1 n2 / (n1 + n2)`` times the energy distance between two sets of n1 and n2 runs.

    ``cross``: the sum of |x_i - x_j| over pairs across the sets; ``within_1``/``within_2``: the sums over
    ordered pairs inside each (every pair twice). -inf where a set has under ``MIN_RUNS`` runs.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = 2 * cross / (n1 * n2) - within_1 / (n1 * (n1 - 1)) - within_2 / (n2 * (n2 - 1))
        q = n1 * n2 / (n1 + n2) * distance
    return np.where((n1 >= MIN_RUNS) & (n2 >= MIN_RUNS), q, -np.inf)


def _weights(sizes: np.ndarray, min_segment: int) -> tuple[np.ndarray, ...]:
    """Weights that make E-Divisive's Q a weighted sum of prefix sums, for every τ (axis -2) and κ (axis -1).

    With P[a, b] the sum over the runs of groups before a against those of groups before b (symmetric), the
    block sums are before-before P[τ,τ], across P[τ,κ] - P[τ,τ] and after-after P[κ,κ] - 2 P[τ,κ] + P[τ,τ],
    so Q(τ, κ) = P[τ,κ] w_cross - P[τ,τ] w_tau - P[κ,κ] w_kappa + bias. The weights depend only on the
    groups' sizes, so shuffles of equal-sized groups share them. ``bias`` is -inf where (τ, κ) is not
    allowed: fewer than ``min_segment`` groups, or ``MIN_RUNS`` runs, before τ or in τ..κ-1.
    """
    counts = _cumsum0(sizes.astype(float))
    n1 = counts[..., :, None]
    n2 = counts[..., None, :] - n1
    tau, kappa = np.arange(sizes.shape[-1] + 1)[:, None], np.arange(sizes.shape[-1] + 1)[None, :]
    allowed = (tau >= min_segment) & (kappa - tau >= min_segment) & (n1 >= MIN_RUNS) & (n2 >= MIN_RUNS)
    with np.errstate(divide="ignore", invalid="ignore"):
        across = 2 / (n1 + n2)  # the three terms of Q, each over its own count of pairs
        before = n2 / ((n1 + n2) * (n1 - 1))
        after = n1 / ((n1 + n2) * (n2 - 1))
        terms = (across + 2 * after, across + before + after, after)
    return (*[np.where(allowed, t, 0.0) for t in terms], np.where(allowed, 0.0, -np.inf))


def _divisive_q(between: np.ndarray, weights: tuple[np.ndarray, ...]) -> np.ndarray:
    """Q of groups 0..τ-1 against τ..κ-1, for every τ (axis -2) and κ (axis -1); -inf where not allowed."""
    groups = between.shape[-1]
    p = np.zeros((*between.shape[:-2], groups + 1, groups + 1))
    p[..., 1:, 1:] = between.cumsum(axis=-2).cumsum(axis=-1)
    diag = np.diagonal(p, axis1=-2, axis2=-1)
    w_cross, w_tau, w_kappa, bias = weights
    return p * w_cross - diag[..., :, None] * w_tau - diag[..., None, :] * w_kappa + bias


def _split_q(between: np.ndarray, sizes: np.ndarray, min_segment: int) -> np.ndarray:
    """Q of groups 0..τ-1 against all the rest, for τ = 0..g (shape (..., g + 1)): one change, none after it.

    P[τ, g] and P[τ, τ] are running sums of each group's distances to all runs and to itself and the groups
    before it, so no 2-D prefix sums are needed.
    """
    to_all = _cumsum0(between.sum(axis=-1))
    to_itself = np.diagonal(between, axis1=-2, axis2=-1)
    to_earlier = _cumsum0(to_itself + 2 * np.tril(between, -1).sum(axis=-1))
    n1 = _cumsum0(sizes.astype(float))
    q = _energy_q(to_all - to_earlier, to_earlier, to_all[..., -1:] - 2 * to_all + to_earlier, n1, n1[..., -1:] - n1)
    groups = np.arange(sizes.shape[-1] + 1)
    return np.where((groups >= min_segment) & (groups <= sizes.shape[-1] - min_segment), q, -np.inf)


def _best(q: np.ndarray) -> np.ndarray:
    """The largest Q of each grid in a batch (shape (..., g + 1, g + 1) to (...))."""
    return q.reshape(*q.shape[:-2], -1).max(axis=-1)


# -- detection -----------------------------------------------------------------------------------------


def _binary_segmentation(series: _Series, min_segment: int, alpha: float, permutations: int, seed: int,
                         unit: Unit) -> list[tuple[int, float]]:  # fmt: skip
    """Significant splits as (group index, p-value), in series order.

    Each segment is tested on its own, with a generator seeded by the seed and the segment's bounds, so
    that the result does not depend on the order in which segments are visited.
    """
    found: list[tuple[int, float]] = []
    todo = [(0, len(series.labels))]
    while todo:
        first, end = todo.pop()
        starts = series.starts[first : end + 1] - series.starts[first]
        ranks = _ranks(series.x[series.starts[first] : series.starts[end]])
        q = _divisive_q(_between(ranks, starts), _weights(np.diff(starts), min_segment))
        best = int(np.unravel_index(int(np.argmax(q)), q.shape)[0])  # τ; κ only bounds the comparison
        if not np.isfinite(q.max()):
            continue
        rng = np.random.default_rng([seed, first, end])
        shuffles = (_shuffled_groups if unit == "groups" else _shuffled_runs)(ranks, starts, min_segment, rng)
        p_value = _permutation_p_value(shuffles, float(q.max()), alpha, permutations)
        if p_value <= alpha * (1 + SLACK):
            found.append((first + best, p_value))
            todo += [(first, first + best), (first + best, end)]
    return sorted(found)


def _permutation_p_value(shuffles: Iterator[np.ndarray], observed: float, alpha: float, permutations: int) -> float:
    """Share of shuffles whose best Q reaches the observed one, as (1 + hits) / (1 + shuffles).

    Stops as soon as the hits rule out significance at ``alpha`` (the value then returned is only an
    estimate, above ``alpha``); a significant p-value always comes from all ``permutations`` shuffles.
    """
    allowed = math.floor(alpha * (permutations + 1) * (1 + SLACK)) - 1  # hits a significant result may have
    reach = observed - SLACK * max(1.0, abs(observed))
    hits = done = 0
    for best in shuffles:
        best = best[: permutations - done]
        hits += int(np.count_nonzero(best >= reach))
        done += len(best)
        if hits > allowed or done >= permutations:
            break
    return (1 + hits) / (1 + done)


def _shuffled_runs(ranks: np.ndarray, starts: np.ndarray, min_segment: int,
                   rng: np.random.Generator) -> Iterator[np.ndarray]:  # fmt: skip
    """Best Q of batches of shuffles of the runs, the groups' sizes and places kept."""
    size, weights = _batch_size(len(ranks)), _weights(np.diff(starts), min_segment)
    while True:
        shuffled = rng.permuted(np.broadcast_to(ranks, (size, len(ranks))), axis=1)
        yield _best(_divisive_q(_between(shuffled, starts), weights))


def _shuffled_groups(ranks: np.ndarray, starts: np.ndarray, min_segment: int,
                     rng: np.random.Generator) -> Iterator[np.ndarray]:  # fmt: skip
    """Best Q of batches of shuffles of whole groups, each keeping its runs: only g² sums a shuffle."""
    between, sizes = _between(ranks, starts), np.diff(starts)
    groups = len(sizes)
    size = _batch_size(groups)
    same = _weights(sizes, min_segment) if np.all(sizes == sizes[0]) else None  # any order has these sizes
    while True:
        order = rng.permuted(np.broadcast_to(np.arange(groups), (size, groups)), axis=1)
        shuffled = between[order[:, :, None], order[:, None, :]]
        yield _best(_divisive_q(shuffled, same if same is not None else _weights(sizes[order], min_segment)))


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
    starts = series.starts[first : end + 1] - series.starts[first]
    window = series.x[series.starts[first] : series.starts[end]]
    best = int(np.argmax(_split_q(_between(_ranks(window), starts), np.diff(starts), min_segment)))
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


def _describe(series: _Series, raw: np.ndarray, first: int, split: int, end: int, span: tuple[int, int],
              p_value: float, relative: bool, unit: Unit) -> ChangePoint:  # fmt: skip
    """Levels, magnitude and direction of the change at ``split`` between groups first and end.

    With groups as the unit, the shift is estimated from the groups' medians: the runs of one commit share
    its noise, so counting them as independent would make the interval too narrow.
    """
    lo, at, hi = series.starts[first], series.starts[split], series.starts[end]
    if unit == "groups":
        medians = [np.median(series.x[a:b]) for a, b in itertools.pairwise(series.starts[first : end + 1])]
        estimate, low, high = shift_estimate(medians[: split - first], medians[split - first :])
    else:
        estimate, low, high = shift_estimate(series.x[lo:at], series.x[at:hi])
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
    """How to read a measure's change points: which way is worse, and whether it is compared as a ratio."""

    worse: Direction
    relative: bool


#: The measures publish charts, by their field name in a run's row.
MEASURES = {
    "train_s": Measure(worse="up", relative=True),
    "train_img_s": Measure(worse="down", relative=True),
    "test_accuracy_pct": Measure(worse="down", relative=False),
}


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
