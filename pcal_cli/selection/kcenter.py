"""Core-set selection: greedy k-center (farthest-first) on unit features, within a point budget.

Sener & Savarese's greedy approximation: the centres start as the labelled units' features (or
one random unit when nothing is labelled yet); each step takes the candidate farthest (Euclidean)
from its nearest centre and makes it a centre. Budget policy as in :mod:`.topk`: a candidate
whose cost does not fit the budget left is skipped and the next farthest is tried; units of
cost 0 are never taken; the budget is never overshot. Ties go to the lowest row.

For speed, at most ``max_candidates`` units (a seeded random subset, when there are more) are
candidates, and at most as many labelled features (also a seeded subset) serve as initial centres.
Distances are squared Euclidean as ``|a|^2 + |b|^2 - 2 a.b`` in float32: one matrix-vector
product per pick, blocks of labelled features for the initial distances. BLAS runs on one thread
(``threadpoolctl``): a 20k x D product per pick is too small to gain from threads, which only
contend on a busy machine, and one thread gives the same sums on any machine.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from pcal_cli.errors import PcalError
from pcal_cli.selection.topk import check_costs

#: Distance entries per block of the initial (labelled x candidates) distance computation.
BLOCK_ENTRIES = 1 << 22


def _subsample(rows: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    """All of ``0..rows-1``, or ``limit`` of them drawn without replacement, sorted."""
    if rows <= limit:
        return np.arange(rows)
    return np.sort(rng.choice(rows, size=limit, replace=False))


def _min_sq_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared distance from each row of ``points`` to its nearest row of ``centres``."""
    best = np.full(len(points), np.inf, dtype=points.dtype)
    p2 = np.einsum("ij,ij->i", points, points)
    block = max(1, BLOCK_ENTRIES // max(len(points), 1))
    for start in range(0, len(centres), block):
        c = centres[start:start + block]
        d = p2[:, None] + np.einsum("ij,ij->i", c, c)[None, :] - 2.0 * (points @ c.T)
        np.minimum(best, d.min(axis=1), out=best)
    return np.maximum(best, 0)


def kcenter_greedy(
    features: np.ndarray,
    costs: np.ndarray,
    budget: int,
    labelled_features: np.ndarray | None = None,
    rng: np.random.Generator | int = 0,
    max_candidates: int = 20000,
) -> np.ndarray:
    """Row indices of ``features`` ``[U, D]`` picked farthest-first, in pick order.

    ``costs`` ``[U]`` are points per unit, ``budget`` the points to spend, ``labelled_features``
    ``[L, D]`` the already labelled units' features (initial centres), ``rng`` a generator or a
    seed (for the candidate subsample and the first centre when nothing is labelled).
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise PcalError(f"features must be [U, D], got shape {features.shape}")
    costs = check_costs(costs, budget, len(features))
    if max_candidates < 1:
        raise PcalError(f"max_candidates must be positive, got {max_candidates}")
    labelled = None if labelled_features is None else np.asarray(labelled_features)
    if labelled is not None and (labelled.ndim != 2 or labelled.shape[1] != features.shape[1]):
        raise PcalError(
            f"labelled features must be [L, {features.shape[1]}], got shape {labelled.shape}"
        )
    rng = np.random.default_rng(rng)
    rows = np.flatnonzero((costs > 0) & (costs <= budget))
    rows = rows[_subsample(len(rows), max_candidates, rng)]
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    if labelled is not None and len(labelled):
        labelled = labelled[_subsample(len(labelled), max_candidates, rng)].astype(np.float32)
    else:
        labelled = None
    first = None if labelled is not None else int(rng.integers(len(rows)))
    with threadpool_limits(limits=1, user_api="blas"):
        picked = _farthest_first(features[rows].astype(np.float32), costs[rows], int(budget),
                                 labelled, first)
    return rows[picked]


def _farthest_first(cand: np.ndarray, cost: np.ndarray, budget: int, labelled: np.ndarray | None,
                    first: int | None) -> np.ndarray:
    """Greedy picks (candidate rows, in order): initial centres ``labelled``, else pick ``first``."""
    sq_norm = np.einsum("ij,ij->i", cand, cand)
    left, picked = budget, []

    def sq_dist_to(i: int) -> np.ndarray:
        return np.maximum(sq_norm + sq_norm[i] - 2 * (cand @ cand[i]), 0)

    if labelled is not None:
        dist = _min_sq_distances(cand, labelled)
    else:
        assert first is not None  # every candidate fits the budget on its own
        picked.append(first)
        left -= int(cost[first])
        dist = sq_dist_to(first)
        dist[first] = -np.inf
    while left > 0:
        i = int(np.argmax(dist))
        if dist[i] == -np.inf:
            break
        dist[i] = -np.inf  # taken, or too big now and for ever after (the budget only shrinks)
        if cost[i] > left:
            continue
        picked.append(i)
        left -= int(cost[i])
        np.minimum(dist, sq_dist_to(i), out=dist)
    return np.asarray(picked, dtype=np.int64)
