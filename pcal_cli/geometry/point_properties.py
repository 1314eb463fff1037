"""Per-point colour discontinuity and surface variation over the k nearest neighbours (ReDAL).

Both come from one k-NN query per chunk of points (scipy's cKDTree, queried in the tree's leaf
order for memory locality), so a scene of millions of points streams through in bounded memory:
temporaries are about ``chunk * k * 100`` bytes.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from pcal_cli.errors import PcalError
from pcal_cli.geometry.grid import as_points
from pcal_cli.geometry.neighbours import leaf_order, query_workers

DEFAULT_K = 50
CHUNK = 50_000


def point_properties(xyz: np.ndarray, rgb: np.ndarray | None = None, k: int = DEFAULT_K,
                     chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """``(colour_discontinuity [N], surface_variation [N])`` as float32.

    - colour discontinuity: mean absolute difference between a point's colour and its ``k``
      nearest neighbours' (colours scaled to 0..1, averaged over the neighbours and the 3
      channels); all zero without ``rgb``. A point's own zero difference is not counted.
    - surface variation: ``l3 / (l1 + l2 + l3)`` of the covariance of the ``k``-neighbourhood
      (the point included), ``l1 >= l2 >= l3``: 0 on a plane, up to 1/3 for isotropic scatter.

    ``k`` is capped at the number of points; scenes of fewer than 3 points get zeros.
    """
    xyz = as_points(xyz)
    n = len(xyz)
    if rgb is not None and (rgb.shape != (n, 3)):
        raise PcalError(f"colours must be [N, 3] for {n} points, got {rgb.shape}")
    if k < 2:
        raise PcalError(f"k must be at least 2, got {k}")
    colour = np.zeros(n, dtype=np.float32)
    variation = np.zeros(n, dtype=np.float32)
    if n < 3:
        return colour, variation
    k = min(int(k), n)
    tree = cKDTree(xyz)
    order = leaf_order(tree)
    scaled = None if rgb is None else rgb.astype(np.float32) / 255.0
    for start in range(0, n, chunk):
        rows = order[start:start + chunk]
        _, idx = tree.query(xyz[rows], k=k, workers=query_workers(len(rows)))
        variation[rows] = _surface_variation(xyz[idx])
        if scaled is not None:
            diff = np.abs(scaled[idx] - scaled[rows][:, None, :])  # (c, k, 3); the point itself adds 0
            colour[rows] = diff.sum(axis=(1, 2)) / (3 * max(k - 1, 1))
    return colour, variation


def _surface_variation(neighbourhoods: np.ndarray) -> np.ndarray:
    """``l_min / sum(l)`` of each ``(k, 3)`` neighbourhood's covariance (0 when degenerate)."""
    centred = neighbourhoods.astype(np.float64)
    centred -= centred.mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", centred, centred) / neighbourhoods.shape[1]
    values = np.linalg.eigvalsh(cov)  # ascending
    total = values.sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, np.clip(values[:, 0], 0.0, None) / safe, 0.0).astype(np.float32)
