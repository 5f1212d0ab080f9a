"""E-Divisive's energy statistic over the runs of a history, and its permutation test.

Matteson and James's (2014) Q(τ, κ): ``n1 n2 / (n1 + n2)`` times the energy distance (exponent 1) between
the runs before a split τ and those from τ to κ. Computed on ranks, so that one run or one commit three times
slower is just the top ranks; or on the values, where there are no such outliers and sizes matter (counts:
a layout move of 0.05% and a 3% change are the same to ranks). Splits fall only between groups (commits).
``changepoints`` uses the best (τ, κ) as the candidate change point; whether it is real is judged there (a
t-test on the commits' values), or here by shuffling (``permutation_p_value``: whole groups, or single runs).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import numpy as np

#: Runs each side must hold, at least: the mean distance within one run is undefined.
MIN_RUNS = 2
#: Relative slack when comparing statistics (floating-point sums of the same numbers in another order).
SLACK = 1e-9

Unit = Literal["groups", "runs"]

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


# -- the candidate and its permutation test ------------------------------------------------------------


def candidate(window: np.ndarray, starts: np.ndarray, min_segment: int,
              ranks: bool = True) -> tuple[int, int, float, np.ndarray] | None:  # fmt: skip
    """The best (τ, κ) of a window of runs whose groups begin at ``starts`` (ending with the run count).

    As (τ, κ, Q, ranks): τ is the first group after the split, κ the end of the stretch compared with the
    groups before it; None when no split leaves ``min_segment`` groups and ``MIN_RUNS`` runs each side.
    ``ranks``: computed on the runs' ranks (the default), or on their values (then "ranks" are the values).
    """
    ranks = _ranks(window) if ranks else np.asarray(window, dtype=float)
    q = _divisive_q(_between(ranks, starts), _weights(np.diff(starts), min_segment))
    if not np.isfinite(q.max()):
        return None
    tau, kappa = np.unravel_index(int(np.argmax(q)), q.shape)
    return int(tau), int(kappa), float(q.max()), ranks


def best_single_split(window: np.ndarray, starts: np.ndarray, min_segment: int, ranks: bool = True) -> int:
    """The group index of the best split of a window that holds one change and no other (κ at its end)."""
    x = _ranks(window) if ranks else np.asarray(window, dtype=float)
    return int(np.argmax(_split_q(_between(x, starts), np.diff(starts), min_segment)))


def permutation_p_value(ranks: np.ndarray, starts: np.ndarray, observed: float, *, min_segment: int, unit: Unit,
                        alpha: float, permutations: int, rng: np.random.Generator) -> float:  # fmt: skip
    """Share of shuffles (of whole groups, or of single runs) whose best Q reaches ``observed``."""
    shuffles = (_shuffled_groups if unit == "groups" else _shuffled_runs)(ranks, starts, min_segment, rng)
    return _permutation_p_value(shuffles, observed, alpha, permutations)


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
