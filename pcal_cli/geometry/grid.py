"""Regular grids over point clouds: integer voxel keys, voxel grouping and grid subsampling.

Grids are anchored at the cloud's minimum corner: point ``p`` falls in the cell
``floor((p - min(xyz)) / size)``. All functions are vectorised and deterministic.
"""

from __future__ import annotations

import numpy as np

from pcal_cli.errors import PcalError

_PACK_LIMIT = 2**62  # linear keys must stay below this to fit in int64


def check_size(size: float, name: str = "size") -> float:
    """``size`` as a positive finite float, else :class:`PcalError`."""
    try:
        value = float(size)
    except (TypeError, ValueError):
        raise PcalError(f"{name} must be a number, got {size!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise PcalError(f"{name} must be a positive number of metres, got {size!r}")
    return value


def as_points(xyz: np.ndarray) -> np.ndarray:
    """``xyz`` as an ``(N, 3)`` float array (float32 kept, anything else as float64)."""
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise PcalError(f"expected an (N, 3) array of coordinates, got shape {xyz.shape}")
    if xyz.dtype != np.float32:
        xyz = xyz.astype(np.float64, copy=False)
    return xyz


def voxel_keys(xyz: np.ndarray, size: float, origin: np.ndarray | None = None) -> np.ndarray:
    """Integer cell coordinates ``floor((xyz - origin) / size)`` as an ``(N, 3)`` int64 array.

    ``origin`` defaults to the minimum corner of ``xyz``, so keys are non-negative.
    """
    xyz = as_points(xyz)
    size = check_size(size)
    if len(xyz) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    origin = xyz.min(axis=0).astype(np.float64) if origin is None else np.asarray(origin, np.float64)
    return np.floor((xyz - origin) / size).astype(np.int64)


def linear_keys(keys: np.ndarray) -> np.ndarray:
    """One int64 per row of non-negative integer ``keys`` (N, 3), preserving lexicographic order.

    When the grid is too large to pack into 63 bits the rows are ranked instead (slower, exact).
    """
    keys = np.asarray(keys, dtype=np.int64)
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    low = keys.min(axis=0)
    keys = keys - low
    dims = keys.max(axis=0) + 1
    if float(dims[0]) * float(dims[1]) * float(dims[2]) < _PACK_LIMIT:
        return (keys[:, 0] * dims[1] + keys[:, 1]) * dims[2] + keys[:, 2]
    _, rank = np.unique(keys, axis=0, return_inverse=True)
    return rank.reshape(-1).astype(np.int64)


def group_by_cell(xyz: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group points by grid cell.

    Returns ``(keys, inverse, counts)``: the occupied cells' integer coordinates ``(M, 3)`` in
    lexicographic order, the cell index of every point ``(N,)`` and the points per cell ``(M,)``.
    """
    keys = voxel_keys(xyz, size)
    linear = linear_keys(keys)
    _, first, inverse, counts = np.unique(linear, return_index=True, return_inverse=True,
                                          return_counts=True)
    return keys[first], inverse.reshape(-1), counts


def cell_means(values: np.ndarray, inverse: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-cell mean of ``values`` (N, D) given each point's cell index (float64, (M, D))."""
    values = np.asarray(values, dtype=np.float64)
    m = len(counts)
    out = np.empty((m, values.shape[1]))
    for d in range(values.shape[1]):
        out[:, d] = np.bincount(inverse, weights=values[:, d], minlength=m)
    return out / np.maximum(counts, 1)[:, None]


def grid_subsample(xyz: np.ndarray, size: float) -> np.ndarray:
    """Indices (ascending) of one point per occupied cell of a ``size``-metre grid.

    The point kept in each cell is the one nearest the centroid of the cell's points; ties go to
    the earliest point in input order. Same input, same output, bit for bit.
    """
    xyz = as_points(xyz)
    size = check_size(size)
    if len(xyz) == 0:
        return np.zeros(0, dtype=np.int64)
    _, inverse, counts = group_by_cell(xyz, size)
    centroid = cell_means(xyz, inverse, counts)
    dist = np.square(xyz - centroid[inverse]).sum(axis=1)
    order = np.lexsort((dist, inverse))  # stable: equal distances keep input order
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.sort(order[starts])
