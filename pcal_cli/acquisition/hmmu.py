"""Hierarchical minimum margin uncertainty (HMMU, HPAL, ICCV 2023): a point's own margin plus the
margins of the mean prediction of ever larger neighbourhoods around it.

Score of point ``i`` (one scene at a time)::

    S_i = w0 * m(p_i) + w1 * m(P1[g1(i)]) + w2 * m(P2[g2(i)]) + w3 * m(P3[g3(i)])

with ``m(p) = p(1) - p(2)`` (largest minus second-largest probability, in [0, 1]), ``g_l(i)`` the
point's group (voxel) at level ``l`` and ``P_l[g]`` the **mean of the probabilities of the points
under group g** (point-weighted, as the paper's Eq. 2 averages the original points of a voxel).
Defaults: levels 0.10 / 0.50 / 1.0 m, weights 1 / 0.1 / 0.01 / 0.001. **Low S = uncertain = ask
first** (the paper's and the released code's convention; pcal's scorer registry ranks high first,
so negate S there).

Hierarchy, the rule implemented (:func:`hmmu_levels`). The children of level 1 are the points; the
children of level ``l + 1`` are the groups of level ``l``, placed at their centroids. At each level:

1. grid the children's positions with a cell of ``levels[l]`` metres, anchored at the children's
   minimum corner (:func:`pcal_cli.geometry.grid.group_by_cell`);
2. the centroid of a cell = the unweighted mean of the positions of the children inside it;
3. each child joins the group of its **nearest** centroid (Euclidean, cKDTree); a child keeps its
   own cell when no other centroid is strictly nearer (so ties never move a child);
4. centroids that no child chose are dropped; the groups left are numbered in cell order. A group
   keeps the centroid of step 2 as its position for the next level (it is not recomputed from its
   new members).

The same rule runs at every level, level 1 included (``nearest=False`` keeps plain cell membership
instead). The paper describes voxel downsampling with averages over the points of a voxel; the
released code does steps 1-3 (its level-1 assignment is also nearest-barycentre) but averages level
2 and 3 as unweighted means of the child means, keeps empty groups (NaN probability) and scans all
points once per voxel. Here every level is a point-weighted mean, empty groups are dropped and the
work is a few sorts, one KD-tree query and one ``bincount`` per class and level.

All points of the scene take part in the means (labelled ones too, as in the released code); pass
the pool you want. Call once per scene: grids never span two scenes.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
from scipy.spatial import cKDTree

from pcal_cli.acquisition.uncertainty import CHUNK_ROWS, as_probs
from pcal_cli.errors import PcalError
from pcal_cli.geometry.grid import as_points, cell_means, group_by_cell

#: Grid cell edges (metres) of the three context levels, finest first.
HMMU_LEVELS: tuple[float, ...] = (0.10, 0.50, 1.0)
#: Weights of the point margin and of each level's margin.
HMMU_WEIGHTS: tuple[float, ...] = (1.0, 0.1, 0.01, 0.001)


def check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    """``levels`` as a tuple of strictly increasing positive finite floats, else :class:`PcalError`."""
    try:
        values = tuple(float(v) for v in levels)
    except (TypeError, ValueError):
        raise PcalError(f"HMMU levels must be numbers of metres, got {levels!r}") from None
    if not values:
        raise PcalError("HMMU needs at least one level")
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise PcalError(f"HMMU levels must be positive numbers of metres, got {values}")
    if any(b <= a for a, b in pairwise(values)):
        raise PcalError(f"HMMU levels must be strictly increasing, got {values}")
    return values


def top2_margin(probs: np.ndarray) -> np.ndarray:
    """``p(1) - p(2)`` per row as float64 (``p(2) = 0`` when there is one class); low = uncertain."""
    probs = as_probs(probs)
    n, c = probs.shape
    out = np.empty(n, dtype=np.float64)
    if c == 1:
        out[:] = probs[:, 0]
        return out
    for start in range(0, n, CHUNK_ROWS):
        top2 = np.partition(probs[start:start + CHUNK_ROWS], c - 2, axis=1)[:, -2:].astype(np.float64)
        out[start:start + len(top2)] = top2[:, 1] - top2[:, 0]
    return out


def _nearest_groups(positions: np.ndarray, size: float, nearest: bool) -> tuple[np.ndarray, np.ndarray]:
    """One level of the hierarchy over ``positions`` (children): ``(group of each child, group
    centroids)`` with groups numbered 0..G-1 in cell order, every group non-empty."""
    _, cell, counts = group_by_cell(positions, size)
    centroids = cell_means(positions, cell, counts)
    if nearest and len(centroids) > 1:
        order = np.argsort(cell, kind="stable")  # queries in cell order: spatially coherent, faster
        bound = size * np.sqrt(3.0) * (1.0 + 1e-6)  # the own centroid is always within the cell diagonal
        _, near = cKDTree(centroids).query(positions[order], k=1, distance_upper_bound=bound)
        near = np.asarray(near, dtype=np.int64)
        found = near < len(centroids)  # always, up to rounding
        rows, near = order[found], near[found]
        # compare both distances with the same formula so that ties keep the own cell exactly
        d_own = np.square(positions[rows] - centroids[cell[rows]]).sum(axis=1)
        d_near = np.square(positions[rows] - centroids[near]).sum(axis=1)
        move = d_near < d_own
        cell = cell.copy()
        cell[rows[move]] = near[move]
    chosen = np.bincount(cell, minlength=len(centroids)) > 0
    group = (np.cumsum(chosen) - 1)[cell]  # renumber the chosen cells 0..G-1, in cell order
    return group.astype(np.int64, copy=False), centroids[chosen]


def hmmu_levels(xyz: np.ndarray, levels: Sequence[float] = HMMU_LEVELS, *,
                nearest: bool = True) -> list[np.ndarray]:
    """Per-point group index (int64 ``[N]``) at each level, finest first (rule: module docstring).

    Group ids at a level are 0..G-1 with every group non-empty; groups nest (a level-``l`` group
    lies inside one level-``l + 1`` group). ``nearest=False``: plain cell membership at every level.
    """
    xyz = as_points(xyz).astype(np.float64, copy=False)
    sizes = check_levels(levels)
    if len(xyz) == 0:
        return [np.zeros(0, dtype=np.int64) for _ in sizes]
    if not np.isfinite(xyz).all():
        raise PcalError("HMMU: coordinates must be finite")
    positions = xyz
    point_group = np.arange(len(xyz), dtype=np.int64)  # level 0: every point is its own child
    out = []
    for size in sizes:
        child_group, positions = _nearest_groups(positions, size, nearest)
        point_group = child_group[point_group]
        out.append(point_group)
    return out


def group_mean_probs(probs: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Point-weighted mean probability of every group ``[G, C]`` (float64), ``group`` in 0..G-1."""
    counts = np.bincount(group)
    sums = np.empty((len(counts), probs.shape[1]))
    for c in range(probs.shape[1]):
        sums[:, c] = np.bincount(group, weights=probs[:, c], minlength=len(counts))
    return sums / np.maximum(counts, 1)[:, None]


def hmmu_parts(xyz: np.ndarray, probs: np.ndarray, levels: Sequence[float] = HMMU_LEVELS, *,
               nearest: bool = True) -> np.ndarray:
    """The terms of the score before weighting, float64 ``[L + 1, N]``: row 0 the point margin,
    row ``l`` the margin of the mean probability of the point's level-``l`` group."""
    probs = as_probs(probs)
    xyz = as_points(xyz)
    if len(xyz) != len(probs):
        raise PcalError(f"HMMU: {len(xyz)} points but {len(probs)} rows of probabilities")
    groups = hmmu_levels(xyz, levels, nearest=nearest)
    parts = np.empty((len(groups) + 1, len(probs)))
    parts[0] = top2_margin(probs)
    for row, group in enumerate(groups, start=1):
        if len(group):
            parts[row] = top2_margin(group_mean_probs(probs, group))[group]
    return parts


def hmmu_scores(xyz: np.ndarray, probs: np.ndarray, levels: Sequence[float] = HMMU_LEVELS,
                weights: Sequence[float] = HMMU_WEIGHTS, *, nearest: bool = True) -> np.ndarray:
    """HMMU score per point (float64 ``[N]``) of one scene: ``sum_l weights[l] * parts[l]``
    (:func:`hmmu_parts`); **lowest first**. ``len(weights)`` must be ``len(levels) + 1``."""
    sizes = check_levels(levels)
    try:
        w = np.array([float(v) for v in weights], dtype=np.float64)
    except (TypeError, ValueError):
        raise PcalError(f"HMMU weights must be numbers, got {weights!r}") from None
    if len(w) != len(sizes) + 1:
        raise PcalError(f"HMMU needs {len(sizes) + 1} weights (point + one per level), got {len(w)}")
    if not np.isfinite(w).all():
        raise PcalError(f"HMMU weights must be finite, got {tuple(w)}")
    parts = hmmu_parts(xyz, probs, sizes, nearest=nearest)
    return w @ parts
