"""The one voxeliser: points to the cells of a cubic grid, each cell once, in lexicographic order.

:func:`voxel_grid` packs the cell of every point into one int64 key a coordinate column at a time
(x-major, so key order is lexicographic (x, y, z) order) and sorts the keys once; a grid too large
to pack is ranked row by row instead (slower, exact, the same result). Training batches, whole-scene
inference and the torchsparse-style ``sparse_quantize`` all call it, so a point lands in the same
voxel, and voxels come in the same order, everywhere.
"""

from __future__ import annotations

import numpy as np

#: Grids with fewer cells than this pack into one int64 key per point.
KEY_LIMIT = 2**62


def voxel_grid(xyz: np.ndarray, voxel_size) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cells int64 [V, D], first int64 [V], inverse int64 [N])``: the occupied cells
    ``floor(xyz / voxel_size)`` sorted lexicographically, the first point of each, and the cell of
    every point (``cells[inverse] == floor(xyz / voxel_size)``). ``xyz`` is ``[N, D]`` (3 for
    points); ``voxel_size`` one size or one per column."""
    xyz = np.asarray(xyz)
    n, d = xyz.shape if xyz.ndim == 2 else (len(xyz), 3)
    voxel_size = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (d,))
    if n == 0:
        return np.zeros((0, d), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    low = np.floor(xyz.min(axis=0) / voxel_size).astype(np.int64)  # = min of the cells (floor is monotonic)
    high = np.floor(xyz.max(axis=0) / voxel_size).astype(np.int64)
    dims = high - low + 1
    if float(np.prod(dims.astype(np.float64))) < KEY_LIMIT:
        keys = np.zeros(n, dtype=np.int64)
        for axis in range(d):
            keys *= dims[axis]
            keys += np.floor(xyz[:, axis] / voxel_size[axis]).astype(np.int64) - low[axis]
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    else:  # a grid too large to pack: rank the rows instead
        cells = np.floor(xyz / voxel_size).astype(np.int64)
        _, first, inverse = np.unique(cells, axis=0, return_index=True, return_inverse=True)
    cells = np.floor(xyz[first] / voxel_size).astype(np.int64)
    return cells, first.astype(np.int64), inverse.reshape(-1).astype(np.int64, copy=False)
