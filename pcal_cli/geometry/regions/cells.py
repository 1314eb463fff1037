"""Fixed grid cells: the ``cells`` region builder (cubes, split octree-style above a cap)."""

from __future__ import annotations

import numpy as np

from pcal_cli.geometry.grid import as_points, check_size, group_by_cell
from pcal_cli.geometry.regions.ids import check_int, contiguous


def grid_cells(xyz: np.ndarray, cell: float = 0.25, max_points: int | None = None) -> np.ndarray:
    """Fixed 3D grid cells: cubes of ``cell`` metres anchored at the cloud's minimum corner.

    Ids follow the cells' integer coordinates ``floor((p - min) / cell)`` in lexicographic
    (x, y, z) order. With ``max_points``, a cell holding more points is split octree-style into
    its 8 half-size children, recursively, until every part holds at most ``max_points`` points
    (coincident points that no split separates are cut in input order); the parts keep the
    order of their parent and then of their child coordinates.
    """
    xyz = as_points(xyz)
    cell = check_size(cell, "cell")
    if len(xyz) == 0:
        return np.zeros(0, dtype=np.int32)
    _, label, counts = group_by_cell(xyz, cell)
    if max_points is None:
        return label.astype(np.int32)
    cap = check_int(max_points, "max_points", 1)
    origin = xyz.min(axis=0).astype(np.float64)
    for level in range(1, _MAX_SPLIT_LEVEL + 2):
        big = (counts > cap)[label]
        if not big.any():
            break
        key = label.astype(np.int64) * 8
        if level <= _MAX_SPLIT_LEVEL:  # the child octant of each point of an oversized part
            child = np.floor((xyz[big] - origin) / (cell / 2.0**level)).astype(np.int64) & 1
            key[big] += child[:, 0] * 4 + child[:, 1] * 2 + child[:, 2]
        else:  # coincident points: cut each oversized part in runs of `cap` in input order
            key = label.astype(np.int64) * (len(xyz) + 1)
            key[big] += _rank_within(label)[big] // cap
        label = contiguous(key)
        counts = np.bincount(label)
    return label.astype(np.int32)


_MAX_SPLIT_LEVEL = 24  # cell / 2**24 is below float32 resolution: further splits cannot separate


def _rank_within(label: np.ndarray) -> np.ndarray:
    """Position of each element among the elements with the same label, in input order."""
    order = np.argsort(label, kind="stable")
    sorted_label = label[order]
    starts = np.flatnonzero(np.r_[True, sorted_label[1:] != sorted_label[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(label)]))
    rank = np.empty(len(label), dtype=np.int64)
    rank[order] = np.arange(len(label)) - run_start
    return rank
