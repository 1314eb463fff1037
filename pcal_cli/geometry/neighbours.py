"""Nearest neighbours (scipy's cKDTree) and normals from local covariance.

Large queries run on all cores (``workers=-1``); each query is answered independently, so results
do not depend on the number of threads. Small ones run on one thread, where starting threads
would cost more than it saves.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from pcal_cli.geometry.grid import as_points

PARALLEL_QUERIES = 20_000  # queries below this count run on one thread
CHUNK = 100_000  # points per batch in estimate_normals: temporaries of about CHUNK * k * 80 bytes


def query_workers(n_queries: int) -> int:
    """The ``workers`` argument for a cKDTree query of ``n_queries`` points."""
    return -1 if n_queries >= PARALLEL_QUERIES else 1


def knn(xyz: np.ndarray, k: int, query: np.ndarray | None = None,
        tree: cKDTree | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest points of ``xyz`` to each point of ``query`` (default: ``xyz`` itself).

    Returns ``(distances (M, k) float64, indices (M, k) int64)``, nearest first; when ``query`` is
    ``xyz`` the first neighbour is the point itself. ``k`` is capped at ``len(xyz)``.
    """
    xyz = as_points(xyz)
    itself = query is None
    query = xyz if itself else as_points(query)
    k = max(1, min(int(k), len(xyz)))
    if len(xyz) == 0 or len(query) == 0:
        return np.zeros((len(query), 0)), np.zeros((len(query), 0), dtype=np.int64)
    tree = cKDTree(xyz) if tree is None else tree
    m = len(query)
    if not itself:
        dist, idx = tree.query(query, k=k, workers=query_workers(m))
        return dist.reshape(m, k), idx.reshape(m, k).astype(np.int64)
    order = leaf_order(tree)
    dist, idx = np.empty((m, k)), np.empty((m, k), dtype=np.int64)
    d, i = tree.query(query[order], k=k, workers=query_workers(m))
    dist[order], idx[order] = d.reshape(m, k), i.reshape(m, k)
    return dist, idx


def leaf_order(tree: cKDTree) -> np.ndarray:
    """The tree's points in leaf order: querying in this order keeps memory access local."""
    return tree.indices


def estimate_normals(xyz: np.ndarray, k: int = 16, return_variation: bool = False,
                     chunk: int = CHUNK) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Unit normals ``(N, 3)`` float32: the smallest-eigenvalue eigenvector of each point's
    ``k``-neighbourhood covariance (batched ``np.linalg.eigh`` over chunks of ``chunk`` points).

    The sign of a normal is not observable from points; it is fixed so that ``z >= 0`` (then
    ``y >= 0``, then ``x >= 0`` on ties), which makes results deterministic. With
    ``return_variation`` also returns the surface variation ``l0 / (l0 + l1 + l2)`` (float32),
    0 on a plane and up to 1/3 for isotropic scatter. Fewer than 3 points give normals ``+z``.
    """
    xyz = as_points(xyz)
    n = len(xyz)
    normals = np.zeros((n, 3), dtype=np.float32)
    variation = np.zeros(n, dtype=np.float32)
    if n < 3:
        normals[:, 2] = 1.0
        return (normals, variation) if return_variation else normals
    k = max(3, min(int(k), n))
    tree = cKDTree(xyz)
    order = leaf_order(tree)  # querying in the tree's own order is ~3x faster than shuffled
    for start in range(0, n, chunk):
        rows = order[start:start + chunk]
        _, idx = tree.query(xyz[rows], k=k, workers=query_workers(len(rows)))
        nb = xyz[idx].astype(np.float64)  # (c, k, 3)
        nb -= nb.mean(axis=1, keepdims=True)
        cov = np.einsum("nki,nkj->nij", nb, nb) / k
        values, vectors = np.linalg.eigh(cov)  # ascending eigenvalues
        normals[rows] = _orient(vectors[:, :, 0])
        total = values.sum(axis=1)
        variation[rows] = np.where(total > 0, values[:, 0] / np.where(total > 0, total, 1), 0)
    return (normals, variation) if return_variation else normals


def _orient(normal: np.ndarray) -> np.ndarray:
    """Flip each row so its first non-zero component among (z, y, x) is positive."""
    eps = 1e-9
    sign = np.where(np.abs(normal[:, 2]) > eps, np.sign(normal[:, 2]),
                    np.where(np.abs(normal[:, 1]) > eps, np.sign(normal[:, 1]), np.sign(normal[:, 0])))
    sign[sign == 0] = 1
    return normal * sign[:, None]
