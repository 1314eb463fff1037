"""SeedAL's diversity measures: per-scene centroids, intra-scene similarity and pair weights.

Each scene's descriptor set is summarised by ``K`` k-means centroids, scaled to unit length, so
the dot product of two centroids is their cosine similarity. Then:

- ``mu_s``: the mean cosine over the distinct pairs of centroids of scene ``s`` (low = the scene
  holds varied content);
- ``mu_st``: the mean cosine over all ``|C_s| x |C_t|`` pairs of one centroid of ``s`` and one of
  ``t`` (low = the two scenes look unalike);
- the pair weight ``w_st = (1 - mu_s)(1 - mu_t)(1 - mu_st)``: high when both scenes are varied and
  unlike each other.

Differences from the released code: ``mu_st`` uses the full cross block (the release cut the block
as if both scenes had the same number of centroids, which mixes in within-scene similarities when
they differ); a scene with a single centroid has ``mu_s = 1`` (no diversity) instead of crashing.
"""

from __future__ import annotations

import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from pcal_cli.errors import PcalError

#: k-means restarts, pinned: scikit-learn's default changed from 10 to 1 ("auto") in 1.4, which the
#: release left to the installed version.
N_INIT = 10
#: Entries of one block of the scene-by-scene similarity matrix in :func:`pair_weights`.
BLOCK_ENTRIES = 1 << 22


def scene_centroids(desc: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means centroids of one scene's descriptors ``[R, D]``, each scaled to unit length: ``[k', D]`` float64.

    scikit-learn's ``KMeans`` with ``n_init=10`` and ``random_state=seed`` on one thread (the same
    sums in the same order on any machine). ``k' = min(k, number of distinct rows)``. A centroid
    of zero length (possible after centring) is left at zero: its cosine with anything is 0.
    """
    from sklearn.cluster import KMeans

    desc = np.asarray(desc, dtype=np.float64)
    if desc.ndim != 2 or desc.shape[0] < 1 or desc.shape[1] < 1:
        raise PcalError(f"scene descriptors must be an (R, D) array with R, D >= 1, got shape {desc.shape}")
    if not np.isfinite(desc).all():
        raise PcalError("scene descriptors contain NaN or infinite values")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise PcalError(f"the number of clusters must be an integer >= 1, got {k!r}")
    k = min(int(k), len(np.unique(desc, axis=0)))
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "fewer distinct clusters than requested" cannot apply after the cap
        centres = KMeans(n_clusters=k, n_init=N_INIT, random_state=int(seed)).fit(desc).cluster_centers_
    return _unit_rows(centres)


def self_similarity(centroids: np.ndarray) -> float:
    """``mu_s``: the mean cosine similarity over the distinct pairs ``i < j`` of a scene's centroids.

    ``centroids`` ``[k, D]`` should be unit rows (as :func:`scene_centroids` returns). A scene with
    a single centroid (all its descriptors identical, or one descriptor) has no pair: it is given
    ``mu_s = 1``, i.e. no diversity, so every pair weight involving it is 0.
    """
    c = _check_centroids(centroids, "centroids")
    k = len(c)
    if k < 2:
        return 1.0
    gram = c @ c.T
    upper = np.triu_indices(k, 1)
    return float(gram[upper].mean())


def pair_weights(
    centroids: list[np.ndarray],
    *,
    top: int | None = None,
    points: np.ndarray | None = None,
    budget: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pair weights ``w_st = (1 - mu_s)(1 - mu_t)(1 - mu_st)`` of scenes ``s < t``.

    ``centroids``: one ``[k_s, D]`` array of unit rows per scene (counts may differ). Returns
    ``(pairs [P, 2] int64 with s < t, weights [P] float64)``.

    ``mu_st`` is the mean of the full ``k_s x k_t`` cross block of cosines. Because the mean of all
    products ``a . b`` over ``a in C_s, b in C_t`` equals ``(sum C_s) . (sum C_t) / (k_s k_t)``, the
    block means of the stacked Gram matrix come from one product of the per-scene centroid sums
    (``[S, D] x [D, S]``, in row blocks), never the ``(sum k_s)^2`` Gram matrix itself; ``mu_s``
    likewise is ``(|sum C_s|^2 - sum |c|^2) / (k_s (k_s - 1))``, 1 for one centroid.

    Each factor ``1 - mu`` lies in ``[0, 2]`` mathematically (cosines are at most 1); rounding can
    push a ``mu`` a hair above 1, so factors are clipped at 0 and weights are never negative (the
    selection's linearisation relies on that). Weights range over ``[0, 8]``.

    Without ``top``, ``points`` or ``budget``: all ``S (S - 1) / 2`` pairs in lexicographic order.
    With ``points`` (per-scene point counts) and ``budget``: pairs whose two scenes together exceed
    the budget are dropped (they can never both be chosen). With ``top``: only pairs of positive
    weight are kept, at most ``top`` of them, the heaviest, ordered by weight (descending), then
    ``s``, then ``t``; memory stays ``O(S x block + top)`` however many scenes there are.
    """
    if not isinstance(centroids, (list, tuple)) or len(centroids) == 0:
        raise PcalError("pair_weights needs a list of per-scene centroid arrays")
    sets = [_check_centroids(c, f"centroids of scene {i}") for i, c in enumerate(centroids)]
    dims = {c.shape[1] for c in sets}
    if len(dims) > 1:
        raise PcalError(f"centroids of all scenes need the same dimension, got {sorted(dims)}")
    s = len(sets)
    if top is not None and (isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1):
        raise PcalError(f"top must be a positive integer, got {top!r}")
    cost = None
    if (points is None) != (budget is None):
        raise PcalError("pair_weights needs both points and budget, or neither")
    if points is not None:
        cost = np.asarray(points, dtype=np.int64).reshape(-1)
        if len(cost) != s:
            raise PcalError(f"points has {len(cost)} entries for {s} scenes")

    counts = np.array([len(c) for c in sets], dtype=np.float64)
    stacked = np.concatenate(sets, axis=0)
    starts = np.r_[0, np.cumsum([len(c) for c in sets])[:-1]].astype(np.int64)
    sums = np.add.reduceat(stacked, starts, axis=0)
    squares = np.add.reduceat(np.einsum("ij,ij->i", stacked, stacked), starts)
    mu_s = scene_self_similarities(sums, squares, counts)
    diversity = np.clip(1.0 - mu_s, 0.0, None)

    found_pairs, found_weights = [], []
    kept = 0
    block = max(1, BLOCK_ENTRIES // max(s, 1))
    for first in range(0, s - 1, block):
        last = min(first + block, s - 1)
        rows = np.arange(first, last)
        mu_st = (sums[first:last] @ sums.T) / (counts[first:last, None] * counts[None, :])
        weight = diversity[first:last, None] * diversity[None, :] * np.clip(1.0 - mu_st, 0.0, None)
        upper = np.arange(s)[None, :] > rows[:, None]
        if cost is not None:
            upper &= cost[first:last, None] + cost[None, :] <= budget
        if top is not None:
            upper &= weight > 0
        i, j = np.nonzero(upper)
        found_pairs.append(np.stack([rows[i], j], axis=1).astype(np.int64))
        found_weights.append(weight[i, j])
        kept += len(i)
        if top is not None and kept > 4 * top:
            found_pairs, found_weights = _heaviest(found_pairs, found_weights, top)
            kept = len(found_weights[0])
    if not found_pairs:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float64)
    if top is not None:
        found_pairs, found_weights = _heaviest(found_pairs, found_weights, top)
    return np.concatenate(found_pairs, axis=0), np.concatenate(found_weights)


def scene_self_similarities(sums: np.ndarray, squares: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``mu_s`` of every scene from its centroid sum ``[S, D]``, sum of squared norms ``[S]`` and count ``[S]``."""
    total = np.einsum("ij,ij->i", sums, sums) - squares
    pairs = counts * (counts - 1.0)
    return np.where(counts > 1, total / np.where(counts > 1, pairs, 1.0), 1.0)


def _heaviest(pairs: list[np.ndarray], weights: list[np.ndarray],
              top: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The ``top`` heaviest pairs, by weight (descending), then first scene, then second scene."""
    p = np.concatenate(pairs, axis=0)
    w = np.concatenate(weights)
    order = np.lexsort((p[:, 1], p[:, 0], -w))[:top]
    return [p[order]], [w[order]]


def _check_centroids(centroids: np.ndarray, what: str) -> np.ndarray:
    c = np.asarray(centroids, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] < 1:
        raise PcalError(f"{what} must be a (k, D) array with k, D >= 1, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise PcalError(f"{what} contain NaN or infinite values")
    return c


def _unit_rows(a: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(a, axis=1, keepdims=True)
    return np.where(norm > 1e-12, a / np.where(norm > 1e-12, norm, 1.0), 0.0)
