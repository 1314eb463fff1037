"""Budgeted top-k: walk the units from the highest score down and buy what still fits.

Policy (the same for every selector in pcal):

- **Ranking**: descending score; equal scores keep the row order of the input (a stable sort),
  so callers that sort rows by (scene, unit) get deterministic, reproducible selections. NaN
  scores rank last. ``order`` replaces the ranking by an explicit one (e.g. a diversity-aware
  re-ranking).
- **Budget**: a unit is taken when its cost (points) fits the budget left; otherwise it is
  skipped and the walk continues, so smaller units further down can still fill the budget. The
  budget is never overshot, and units of cost 0 (nothing left to label) are never taken.
- **Units per scene** (``"20/scene"``): call :func:`select_topk` per scene with
  ``costs = (costs > 0)`` and ``budget = 20``.

The walk is vectorised: a cumulative sum takes the longest prefix that fits in one step, the
unit that overflows is skipped, the rest is filtered to units that can still fit, and so on;
only a short tail (at most ``LOOP_ROWS`` rows) is walked in Python. With uniform costs this is
one sort and one cumulative sum, O(U log U).
"""

from __future__ import annotations

import numpy as np

from pcal_cli.errors import PcalError

#: Tails at most this long are walked row by row (cheaper than another vectorised round).
LOOP_ROWS = 2048


def check_costs(costs: np.ndarray, budget: int, rows: int | None = None) -> np.ndarray:
    """``costs`` as int64 ``[U]``; :class:`PcalError` for negative costs or a bad budget."""
    costs = np.asarray(costs)
    if costs.ndim != 1 or not (np.issubdtype(costs.dtype, np.integer) or costs.dtype == np.bool_):
        raise PcalError(f"costs must be a 1-D integer array, got {costs.dtype} {costs.shape}")
    if rows is not None and len(costs) != rows:
        raise PcalError(f"{len(costs)} costs for {rows} units")
    costs = costs.astype(np.int64, copy=False)
    if len(costs) and costs.min() < 0:
        raise PcalError(f"unit costs must be >= 0, got {costs.min()}")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
        raise PcalError(f"the budget must be a non-negative number of points, got {budget!r}")
    return costs


def rank_descending(scores: np.ndarray) -> np.ndarray:
    """Row indices by descending score, ties in row order, NaN last (a stable sort)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def walk_budget(rank: np.ndarray, costs: np.ndarray, budget: int) -> np.ndarray:
    """The rows of ``rank`` taken by the skip-and-continue walk (in ``rank`` order)."""
    rank = np.asarray(rank, dtype=np.int64)
    left = int(budget)
    rank = rank[(costs[rank] > 0) & (costs[rank] <= left)]
    taken: list[np.ndarray] = []
    while len(rank) and left > 0:
        if len(rank) <= LOOP_ROWS:
            taken.append(walk_budget_loop(rank, costs, left))
            break
        spent = np.cumsum(costs[rank])
        fits = int(np.searchsorted(spent, left, side="right"))  # >= 1: every row fits alone
        taken.append(rank[:fits])
        if fits == len(rank):
            break
        left -= int(spent[fits - 1])
        rest = rank[fits + 1:]  # rank[fits] overflows: skip it
        rank = rest[costs[rest] <= left]
    return np.concatenate(taken) if taken else np.zeros(0, dtype=np.int64)


def walk_budget_loop(rank: np.ndarray, costs: np.ndarray, budget: int) -> np.ndarray:
    """Reference row-by-row walk of the same policy as :func:`walk_budget`."""
    left = int(budget)
    taken = []
    for row, cost in zip(rank.tolist(), costs[rank].tolist()):
        if left == 0:
            break
        if 0 < cost <= left:
            taken.append(row)
            left -= cost
    return np.asarray(taken, dtype=np.int64)


def select_topk(scores: np.ndarray, costs: np.ndarray, budget: int,
                order: np.ndarray | None = None) -> np.ndarray:
    """Indices of the units to label, in rank order, spending at most ``budget`` points.

    ``scores`` and ``costs`` (points per unit) are ``[U]``; ``order``, when given, is the
    ranking to walk (distinct row indices, possibly a subset) instead of descending ``scores``.
    See the module docstring for the tie and budget policy.
    """
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise PcalError(f"scores must be 1-D, got shape {scores.shape}")
    costs = check_costs(costs, budget, len(scores))
    if order is None:
        rank = rank_descending(scores)
    else:
        rank = np.asarray(order)
        if rank.ndim != 1 or not np.issubdtype(rank.dtype, np.integer):
            raise PcalError(f"order must be a 1-D array of row indices, got {rank.dtype} {rank.shape}")
        rank = rank.astype(np.int64, copy=False)
        if len(rank) and (rank.min() < 0 or rank.max() >= len(scores)):
            raise PcalError(f"order holds row indices outside 0..{len(scores) - 1}")
        if len(rank) and np.bincount(rank, minlength=len(scores)).max() > 1:
            raise PcalError("order lists a row more than once")
    return walk_budget(rank, costs, budget)


def select_top_per_group(scores: np.ndarray, groups: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` highest-scored rows of every group (e.g. scene), ties by row order."""
    chosen = [rows[np.argsort(-scores[rows], kind="stable")[:count]]
              for rows in (np.flatnonzero(groups == g) for g in np.unique(groups))]
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
