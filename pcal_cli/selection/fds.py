"""Feature-distance suppression (FDS, HPAL, ICCV 2023): a greedy walk down a ranking that skips a
candidate when an already accepted one is both near it in space and similar to it in features.

Rule (the paper's Sec. 3.3 and the released code): walk the rows in the given ``order``; row ``i``
is **suppressed** when some row ``j`` accepted earlier in this walk has the same scene,
``||xyz_i - xyz_j||_2 < radius`` (strict) **and** ``cos(f_i, f_j) > tau`` (strict); otherwise it is
accepted. The walk stops once ``budget`` rows are accepted. A zero feature vector is dissimilar to
everything (its cosine is never above ``tau``). Only rows accepted in this walk suppress: earlier
rounds' labels do not (as in the released code).

Fast and exact: the ranking is cut into chunks. For each chunk, (1) rows near and similar to a row
accepted in earlier chunks are dropped (one KD-tree over the accepted rows); (2) among the rows
left, the near-and-similar pairs form a graph whose edges point from the earlier row to the later
one, and the greedy outcome on that graph (a row is accepted iff none of its earlier neighbours
is) is resolved by vectorised sweeps, finishing the few rows left row by row. Scenes are kept apart
by a fourth coordinate (the scene's rank times a gap larger than ``radius``), and every candidate
pair is re-checked exactly (same scene, squared distance < radius squared). Since a row's fate
depends only on rows before it, cutting the walk at the budget gives exactly the sequential result.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from pcal_cli.errors import PcalError

#: Smallest chunk of the ranking examined at once.
MIN_CHUNK = 4096
#: Largest chunk of the ranking examined at once (bounds the pair lists in dense regions).
MAX_CHUNK = 1 << 17
#: Vectorised sweeps over the conflict graph of a chunk before the rest is walked row by row.
SWEEPS = 32
#: Candidate pairs whose cosine is computed at once.
PAIR_BLOCK = 1 << 15


def _check_inputs(order: np.ndarray, scene_of: np.ndarray, xyz: np.ndarray, features: np.ndarray,
                  budget: int, radius: float, tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise PcalError(f"fds: xyz must be (N, 3), got shape {xyz.shape}")
    n = len(xyz)
    features = np.asarray(features)
    if features.ndim != 2 or len(features) != n:
        raise PcalError(f"fds: features must be (N, D) with N = {n} rows, got shape {features.shape}")
    scene_of = np.asarray(scene_of)
    if scene_of.shape != (n,):
        raise PcalError(f"fds: scene_of must be one scene id per row ({n}), got shape {scene_of.shape}")
    order = np.asarray(order)
    if order.ndim != 1 or not (np.issubdtype(order.dtype, np.integer) or len(order) == 0):
        raise PcalError(f"fds: order must be a 1-D array of row indices, got {order.dtype} {order.shape}")
    order = order.astype(np.int64, copy=False)
    if len(order) and (order.min() < 0 or order.max() >= n):
        raise PcalError(f"fds: order holds row indices outside 0..{n - 1}")
    if len(order) and np.bincount(order, minlength=n).max() > 1:
        raise PcalError("fds: order lists a row more than once")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
        raise PcalError(f"fds: the budget must be a non-negative number of rows, got {budget!r}")
    if not (isinstance(radius, (int, float, np.floating, np.integer)) and np.isfinite(radius) and radius > 0):
        raise PcalError(f"fds: radius must be a positive number of metres, got {radius!r}")
    if not (isinstance(tau, (int, float, np.floating, np.integer)) and np.isfinite(tau)):
        raise PcalError(f"fds: tau must be a finite cosine threshold, got {tau!r}")
    _, scene_rank = np.unique(scene_of, return_inverse=True)
    return order, scene_rank.reshape(-1).astype(np.int64), features


def unit_rows(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``features`` scaled to unit length (float32) and a mask of the rows that could be
    scaled; zero (or non-finite) rows stay zero and are masked out."""
    f = np.asarray(features, dtype=np.float32)
    norm = np.sqrt(np.einsum("ij,ij->i", f, f))
    ok = np.isfinite(norm) & (norm > 0)
    return np.where(ok[:, None], f / np.where(ok, norm, 1.0)[:, None], 0.0).astype(np.float32, copy=False), ok


def _similar_pairs(a: np.ndarray, b: np.ndarray, side_a: tuple[np.ndarray, ...], side_b: tuple[np.ndarray, ...],
                   radius2: float, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ``(a, b)`` in the same scene, strictly closer than the radius and with cosine
    strictly above ``tau``. ``side_a`` / ``side_b`` are ``(pos, scene, unit, live)`` arrays that
    ``a`` / ``b`` index; rows with ``live`` False (zero features) are never similar."""
    pos_a, scene_a, unit_a, live_a = side_a
    pos_b, scene_b, unit_b, live_b = side_b
    keep = (scene_a[a] == scene_b[b]) & live_a[a] & live_b[b]
    a, b = a[keep], b[keep]
    keep = np.square(pos_a[a] - pos_b[b]).sum(axis=1) < radius2
    a, b = a[keep], b[keep]
    similar = np.zeros(len(a), dtype=bool)
    for lo in range(0, len(a), PAIR_BLOCK):  # bounded temporaries: PAIR_BLOCK x D per gather
        ia, ib = a[lo:lo + PAIR_BLOCK], b[lo:lo + PAIR_BLOCK]
        similar[lo:lo + PAIR_BLOCK] = np.einsum("ij,ij->i", unit_a[ia], unit_b[ib]) > tau
    return a[similar], b[similar]


def _resolve(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Greedy outcome on a conflict graph over rows 0..n-1 in walk order: row ``i`` is accepted iff
    no accepted row ``j < i`` shares an edge with it. Edges are ``first[k] < second[k]``."""
    state = np.zeros(n, dtype=np.int8)  # 0 undecided, 1 accepted, 2 suppressed
    state[np.setdiff1d(np.arange(n), second)] = 1  # no earlier neighbour at all
    for _ in range(SWEEPS):
        # edges whose later end is still undecided
        live = state[second] == 0
        first, second = first[live], second[live]
        if len(second) == 0:
            return state == 1
        hit = state[first]
        state[second[hit == 1]] = 2  # an accepted earlier neighbour suppresses
        open_before = np.bincount(second[hit == 0], minlength=n)
        # undecided rows whose earlier neighbours are all suppressed are accepted
        state[(state == 0) & (open_before == 0)] = 1
    undecided = np.flatnonzero(state == 0)
    if len(undecided):
        live = state[second] == 0
        first, second = first[live], second[live]
        by_second = np.argsort(second, kind="stable")
        first, second = first[by_second], second[by_second]
        starts = np.searchsorted(second, undecided, side="left")
        ends = np.searchsorted(second, undecided, side="right")
        for row, lo, hi in zip(undecided.tolist(), starts.tolist(), ends.tolist(), strict=True):
            state[row] = 2 if (state[first[lo:hi]] == 1).any() else 1
    return state == 1


def fds_select(order: np.ndarray, scene_of: np.ndarray, xyz: np.ndarray, features: np.ndarray,
               budget: int, radius: float = 0.20, tau: float = 0.8) -> np.ndarray:
    """Rows accepted by feature-distance suppression, in acceptance order (int64, at most ``budget``).

    ``order``: candidate rows, most informative first (distinct indices, possibly a subset);
    ``scene_of`` ``[N]``: scene id per row (any sortable ids); ``xyz`` ``[N, 3]`` metres;
    ``features`` ``[N, D]`` (not necessarily normalised). Rule: module docstring. Deterministic.
    """
    order, scene_rank, features = _check_inputs(order, scene_of, xyz, features, budget, radius, tau)
    radius = float(radius)
    tau = float(tau)
    radius2 = radius * radius
    gap = 4.0 * radius + 1.0  # distance between scenes along the fourth axis (> radius)
    xyz = np.asarray(xyz)
    query_r = radius * (1.0 + 1e-6) + 1e-12  # the exact check follows: never miss a boundary pair

    acc_rows: list[np.ndarray] = []
    acc_pos = np.zeros((0, 3))
    acc_scene = np.zeros(0, dtype=np.int64)
    acc_unit = np.zeros((0, features.shape[1]), dtype=np.float32)
    acc_live = np.zeros(0, dtype=bool)
    left = int(budget)
    start = 0
    rate = 1.0
    while left > 0 and start < len(order):
        size = int(np.clip(np.ceil(1.1 * left / max(rate, 1.0 / 64)), MIN_CHUNK, MAX_CHUNK))
        rows = order[start:start + size]
        start += len(rows)
        pos = xyz[rows].astype(np.float64)
        scene = scene_rank[rows]
        unit, live = unit_rows(features[rows])
        pts4 = np.column_stack([pos, scene * gap])

        # (1) against the rows accepted in earlier chunks
        keep = np.ones(len(rows), dtype=bool)
        if len(acc_pos):
            acc4 = np.column_stack([acc_pos, acc_scene * gap])
            pairs = cKDTree(pts4).sparse_distance_matrix(cKDTree(acc4), query_r, output_type="ndarray")
            if len(pairs):
                a, _ = _similar_pairs(pairs["i"].astype(np.int64), pairs["j"].astype(np.int64),
                                      (pos, scene, unit, live), (acc_pos, acc_scene, acc_unit, acc_live),
                                      radius2, tau)
                keep[a] = False
        idx = np.flatnonzero(keep)

        # (2) among the survivors of this chunk, in walk order
        if len(idx) > 1:
            pairs = cKDTree(pts4[idx]).query_pairs(query_r, output_type="ndarray").astype(np.int64)
            if len(pairs):
                lo, hi = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
                side = (pos[idx], scene[idx], unit[idx], live[idx])
                lo, hi = _similar_pairs(lo, hi, side, side, radius2, tau)
                idx = idx[_resolve(len(idx), lo, hi)]
        taken = idx[:left]
        rate = max(len(idx), 1) / len(rows)
        left -= len(taken)
        acc_rows.append(rows[taken])
        acc_pos = np.concatenate([acc_pos, pos[taken]])
        acc_scene = np.concatenate([acc_scene, scene[taken]])
        acc_unit = np.concatenate([acc_unit, unit[taken]])
        acc_live = np.concatenate([acc_live, live[taken]])
    return np.concatenate(acc_rows) if acc_rows else np.zeros(0, dtype=np.int64)
