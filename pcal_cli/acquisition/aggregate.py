"""From point scores to unit scores: the mean (or max) over a unit's still-unlabelled points.

A *unit* is whatever is bought in one go (a region, a grid cell, a scene, or a point). Every
function here takes per-point ``unit_ids`` (int, ``-1`` = not selectable) and ``available``
(bool, ``True`` = unlabelled), and returns rows for the units that still have at least one
available point, sorted by unit id. All of them share that row order, so scores, costs and
pooled features of one scene line up.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.sparse import csr_matrix

from pcal_cli.errors import PcalError

#: ``unit_ids`` whose largest id is below ``DENSE_IDS_FACTOR * N`` are compacted with a bincount
#: (O(N + max id)); sparser ids go through ``np.unique`` (O(N log N)).
DENSE_IDS_FACTOR = 4


def check_points(unit_ids: np.ndarray, available: np.ndarray | None, n: int | None = None,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``unit_ids`` as int64 ``[N]`` and ``available`` as bool ``[N]`` (all True when None)."""
    unit_ids = np.asarray(unit_ids)
    if unit_ids.ndim != 1 or not np.issubdtype(unit_ids.dtype, np.integer):
        raise PcalError(f"unit ids must be a 1-D integer array, got {unit_ids.dtype} {unit_ids.shape}")
    if n is not None and len(unit_ids) != n:
        raise PcalError(f"{len(unit_ids)} unit ids for {n} points")
    unit_ids = unit_ids.astype(np.int64, copy=False)
    if available is None:
        return unit_ids, np.ones(len(unit_ids), dtype=bool)
    available = np.asarray(available)
    if available.shape != unit_ids.shape or available.dtype != np.bool_:
        raise PcalError(
            f"available must be a bool array like the unit ids {unit_ids.shape}, "
            f"got {available.dtype} {available.shape}"
        )
    return unit_ids, available


def selectable_points(unit_ids: np.ndarray, available: np.ndarray | None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(points, units, inverse)``: indices of the available points with a unit (id >= 0),
    the sorted distinct unit ids among them, and each such point's row in ``units``."""
    unit_ids, available = check_points(unit_ids, available)
    points = np.flatnonzero(available & (unit_ids >= 0))
    ids = unit_ids[points]
    if len(ids) == 0:
        return points, np.zeros(0, np.int64), np.zeros(0, np.int64)
    top = int(ids.max())
    if top < DENSE_IDS_FACTOR * len(ids) + 1024:
        present = np.bincount(ids, minlength=top + 1) > 0
        units = np.flatnonzero(present)
        row = np.cumsum(present) - 1
        return points, units, row[ids]
    units, inverse = np.unique(ids, return_inverse=True)
    return points, units, inverse.astype(np.int64, copy=False)


def unit_scores(
    point_scores: np.ndarray,
    unit_ids: np.ndarray,
    available: np.ndarray | None = None,
    how: Literal["mean", "max"] = "mean",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(units int64 [U], scores float64 [U], costs int64 [U])`` for units with available points.

    A unit's score is the ``mean`` or ``max`` of ``point_scores`` over its available points and
    its cost is the number of those points (what labelling it would buy). Points with unit id
    ``-1`` or ``available == False`` are ignored; ``units`` is sorted.
    """
    point_scores = np.asarray(point_scores)
    if point_scores.ndim != 1:
        raise PcalError(f"point scores must be 1-D, got shape {point_scores.shape}")
    unit_ids, available = check_points(unit_ids, available, len(point_scores))
    if how not in ("mean", "max"):
        raise PcalError(f"unknown unit aggregation {how!r}; choose one of: max, mean")
    points, units, inverse = selectable_points(unit_ids, available)
    costs = np.bincount(inverse, minlength=len(units)).astype(np.int64)
    values = point_scores[points].astype(np.float64, copy=False)
    if how == "mean":
        scores = np.bincount(inverse, weights=values, minlength=len(units)) / np.maximum(costs, 1)
    else:
        scores = np.full(len(units), -np.inf)
        np.maximum.at(scores, inverse, values)  # fast since numpy 1.25
    return units, scores, costs


def pool_features(features: np.ndarray, unit_ids: np.ndarray, available: np.ndarray | None = None,
                  rows: np.ndarray | None = None) -> np.ndarray:
    """Mean feature ``[U, D]`` of each unit's available points, rows as in :func:`unit_scores`.

    ``features`` are per point ``[N, D]``, or per voxel ``[V, D]`` with ``rows`` ``[N]`` giving
    each point's voxel (then no per-point copy of the features is ever made). Computed as one
    sparse averaging matrix times ``features``; float32 stays float32.
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise PcalError(f"features must be [N, D], got shape {features.shape}")
    n = len(features) if rows is None else len(rows)
    unit_ids, available = check_points(unit_ids, available, n)
    if rows is not None and len(rows) and (rows.min() < 0 or rows.max() >= len(features)):
        raise PcalError(f"feature rows must lie in 0..{len(features) - 1}")
    if not np.issubdtype(features.dtype, np.floating):
        features = features.astype(np.float32)
    points, units, inverse = selectable_points(unit_ids, available)
    counts = np.bincount(inverse, minlength=len(units))
    weights = (1.0 / counts)[inverse].astype(features.dtype)
    columns = points if rows is None else np.asarray(rows, dtype=np.int64)[points]
    average = csr_matrix((weights, (inverse, columns)), shape=(len(units), len(features)))
    return np.asarray(average @ features)
