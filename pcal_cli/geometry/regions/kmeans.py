"""Spatial k-means chunks: the ``kmeans`` region builder."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from pcal_cli.geometry.grid import as_points
from pcal_cli.geometry.neighbours import query_workers
from pcal_cli.geometry.regions.ids import check_int, contiguous

KMEANS_SAMPLE = 100_000  # kmeans_chunks fits on at most this many points


def kmeans_chunks(xyz: np.ndarray, chunks: int = 20, seed: int = 0) -> np.ndarray:
    """Spatial k-means chunks: ``chunks`` clusters of the coordinates (fewer if there are fewer
    distinct points).

    scikit-learn's ``KMeans`` (``n_init=3``, ``random_state=seed``, one thread so results do not
    depend on the core count) is fitted on all points, or on a seeded random subsample of 100,000
    points for larger scenes; every point then joins its nearest centre. Ids are contiguous and
    ordered by the centres' positions (x, then y, then z).
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    xyz = as_points(xyz)
    chunks = check_int(chunks, "chunks", 1)
    seed = check_int(seed, "seed", 0)
    n = len(xyz)
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    fit = xyz
    if n > KMEANS_SAMPLE:
        pick = np.random.default_rng(seed).choice(n, KMEANS_SAMPLE, replace=False)
        fit = xyz[np.sort(pick)]
    fit = fit.astype(np.float64)
    k = min(chunks, len(np.unique(fit, axis=0)))
    with threadpool_limits(limits=1):  # one thread: the same sums in the same order on any machine
        model = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(fit)
    centres = model.cluster_centers_
    rank = np.empty(k, dtype=np.int64)
    rank[np.lexsort(centres.T[::-1])] = np.arange(k)
    _, nearest = cKDTree(centres).query(xyz, k=1, workers=query_workers(n))
    return contiguous(rank[nearest]).astype(np.int32)
