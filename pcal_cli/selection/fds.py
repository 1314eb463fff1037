"""Feature-distance suppression (FDS, HPAL, ICCV 2023): a greedy walk down a ranking that skips a
candidate when an already accepted one is both near it in space and similar to it in features.

Rule (the paper's Sec. 3.3 and the released code): walk the rows in the given ``order``; row ``i``
is **suppressed** when some row ``j`` accepted earlier in this walk has the same scene,
``||xyz_i - xyz_j||_2 < radius`` (strict) **and** ``cos(f_i, f_j) > tau`` (strict); otherwise it is
accepted. The walk stops once ``budget`` rows are accepted. A zero feature vector is dissimilar to
everything (its cosine is never above ``tau``). Only rows accepted in this walk suppress: earlier
rounds' labels do not (as in the released code). Arithmetic, which decides the pairs at the
thresholds: squared distances in float64 (``sum((xyz_i - xyz_j)^2) < radius^2``), cosines as the
float32 dot product of the float32 rows scaled to unit length (:func:`unit_rows`).

Fast and exact: the ranking is cut into chunks (a small first one, then sized from the rate of
acceptance so far to about what the budget still needs). For each chunk, (1) rows near and
similar to a row accepted in earlier chunks are dropped; (2) among the rows left, the
near-and-similar pairs form a graph whose edges point from the earlier row to the later one, and
the greedy outcome on that graph (a row is accepted iff none of its earlier neighbours is) is
resolved by vectorised sweeps, finishing the few rows left row by row. Since a row's fate depends
only on rows before it, cutting the walk at the budget gives exactly the sequential result.

- Step (1) looks the chunk's rows up in a hash grid of cells of edge ``radius``: every accepted row
  is entered in each cell of the box ``xyz +- radius`` around it (3 cells per axis, rarely 4), so
  the cell of a row lists every accepted row that can lie within the radius. A row tries the listed
  rows in turn, those whose own cell it is first, and stops at the first that suppresses it: in a
  dense, similar region most rows stop at the first or second. Step (2) takes the pairs of a
  KD-tree over the chunk's rows (a fourth coordinate, the scene's rank times a gap larger than the
  radius, keeps scenes apart). Every pair found either way is re-checked exactly: squared distance
  below the squared radius, same scene.
- Cosines are first bounded without touching the feature rows: with ``theta_i`` the angle between
  ``f_i`` and one pivot direction (the mean unit feature of the first chunk),
  ``|theta_i - theta_j| <= angle(f_i, f_j) <= theta_i + theta_j``. A pair whose bounds clear
  ``tau`` by more than the float32 rounding error (``ERROR_ULPS * (D + 8)`` units of 2^-24, well
  above the error of a float32 dot product of length ``D``) is decided by the bounds, which then
  agree with the float32 rule; the other pairs compute the float32 cosine itself. In a dense region
  of similar features, where almost every row is suppressed, this spares gathering two feature
  rows per pair. A long walk reads every feature row once, in storage order, for these angles.

Measured (``benchmarks/methods.py``, one CPU thread): 1M candidates, budget 20k, D = 96, all in a
2 m cube with nearly parallel features (the whole ranking is walked): 0.5 to 0.6 s of CPU time,
2.5 to 2.7 s before the grid and the bounds. What stays quadratic is a dense pool of *dissimilar*
features: every near pair among the accepted rows needs its cosine computed.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from pcal_cli.errors import PcalError

#: Smallest chunk of the ranking examined at once.
MIN_CHUNK = 1024
#: The first chunk (small: when the top of the ranking is dense and similar, its pairs are many).
FIRST_CHUNK = 2048
#: Largest chunk of the ranking examined at once (bounds the pair lists in dense regions).
MAX_CHUNK = 1 << 17
#: Vectorised sweeps over the conflict graph of a chunk before the rest is walked row by row.
SWEEPS = 32
#: Candidate pairs whose cosine is computed at once.
PAIR_BLOCK = 1 << 15
#: Feature rows summarised at once (norm and pivot cosine; small enough to stay in cache).
ROW_BLOCK = 4096
#: Accepted rows entered in the hash grid at once.
GRID_BLOCK = 4096
#: Cells of the hash grid per radius (cell edge = radius / CELLS_PER_RADIUS).
CELLS_PER_RADIUS = 1
#: Bound on the float32 error of a cosine, in units of 2^-24 per (D + 8): 4 is about 4x the
#: worst-case error of a float32 dot product of unit rows of length D.
ERROR_ULPS = 4


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
    if not np.isfinite(xyz).all():
        raise PcalError("fds: xyz holds NaN or infinite coordinates")
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
    return order, _scene_ranks(scene_of), features


def _scene_ranks(scene_of: np.ndarray) -> np.ndarray:
    """Rank of each row's scene id among the distinct ids (int64); a bincount for small integers."""
    if np.issubdtype(scene_of.dtype, np.integer) and len(scene_of):
        low, high = int(scene_of.min()), int(scene_of.max())
        if high == low:
            return np.zeros(len(scene_of), dtype=np.int64)
        if high - low <= 4 * len(scene_of) + 1024:
            shifted = scene_of.astype(np.int64) - low
            present = np.bincount(shifted) > 0
            return (np.cumsum(present) - 1)[shifted]
    _, scene_rank = np.unique(scene_of, return_inverse=True)
    return scene_rank.reshape(-1).astype(np.int64)


def unit_rows(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``features`` scaled to unit length (float32) and a mask of the rows that could be
    scaled; zero (or non-finite) rows stay zero and are masked out."""
    f = np.asarray(features, dtype=np.float32)
    norm = np.sqrt(np.einsum("ij,ij->i", f, f))
    ok = np.isfinite(norm) & (norm > 0)
    return np.where(ok[:, None], f / np.where(ok, norm, 1.0)[:, None], 0.0).astype(np.float32, copy=False), ok


class _Angles:
    """Per row of ``features``: whether it is live (finite, nonzero) and an interval ``[lo, hi]``
    holding its angle to a fixed pivot direction, wide enough for float32 rounding."""

    def __init__(self, features: np.ndarray, first_rows: np.ndarray) -> None:
        self.features = features
        self.error = ERROR_ULPS * (features.shape[1] + 8) * 2.0 ** -24
        unit, live = unit_rows(features[first_rows])
        pivot = unit[live].sum(axis=0, dtype=np.float64)
        if not np.linalg.norm(pivot) > 0:  # any direction will do (none at all when D = 0)
            pivot = np.eye(1, features.shape[1]).reshape(-1)
        self.pivot = (pivot / max(np.linalg.norm(pivot), 1e-300)).astype(np.float32)
        self.pivot_norm = float(np.linalg.norm(self.pivot.astype(np.float64)))
        self.all: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _summarise(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = np.asarray(block, dtype=np.float32)
        square = np.einsum("ij,ij->i", f, f)
        norm = np.sqrt(square)  # as in unit_rows
        live = np.isfinite(norm) & (norm > 0)
        # the error bound needs a sum of squares far from float32 underflow and overflow
        bounded = live & (square >= 2.0 ** -90) & (square <= 2.0 ** 100)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            cos = (f @ self.pivot).astype(np.float64) / (np.where(live, norm, 1.0).astype(np.float64) * self.pivot_norm)
        bounded &= np.isfinite(cos)
        cos = np.where(bounded, cos, 0.0)
        lo = np.where(bounded, np.arccos(np.clip(cos + self.error, -1.0, 1.0)), 0.0)  # else no information:
        hi = np.where(bounded, np.arccos(np.clip(cos - self.error, -1.0, 1.0)), np.pi)  # [0, pi]
        return live, lo, hi

    def summarise_all(self) -> None:
        """Summarise every row once (sequential reads), for long walks."""
        parts = [self._summarise(self.features[lo:lo + ROW_BLOCK]) for lo in range(0, len(self.features), ROW_BLOCK)]
        self.all = tuple(np.concatenate([p[k] for p in parts]) for k in range(3))

    def __call__(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.all is not None:
            return tuple(a[rows] for a in self.all)
        return self._summarise(self.features[rows])


class _Side:
    """One side of the candidate pairs: rows with positions (one float64 array per axis), scenes
    and feature summaries (:class:`_Angles`); unit feature rows gathered on demand."""

    def __init__(self, rows: np.ndarray, pos: np.ndarray, scene: np.ndarray,
                 summary: tuple[np.ndarray, np.ndarray, np.ndarray], features: np.ndarray,
                 unit: np.ndarray | None = None) -> None:
        self.rows, self.scene = rows, scene
        self.axes = tuple(np.ascontiguousarray(pos[:, k], dtype=np.float64) for k in range(3))
        self.live, self.lo, self.hi = summary
        self.features = features
        self.unit = unit  # unit rows of all of ``rows``, when known

    def unit_of(self, index: np.ndarray) -> np.ndarray:
        if self.unit is None and len(index) > len(self.rows) // 4:
            self.unit = unit_rows(self.features[self.rows])[0]  # many pairs: scale every row once
        if self.unit is not None:
            return self.unit[index]
        return unit_rows(self.features[self.rows[index]])[0]


def _similar(a: np.ndarray, b: np.ndarray, side_a: _Side, side_b: _Side, tau: float,
             limits: tuple[float, float]) -> np.ndarray:
    """Mask of the pairs ``(a, b)`` whose float32 cosine is strictly above ``tau``: decided by the
    angle bounds where they clear the threshold, else computed."""
    similar_below, dissimilar_above = limits
    live = side_a.live[a] & side_b.live[b]
    lo_a, hi_a, lo_b, hi_b = side_a.lo[a], side_a.hi[a], side_b.lo[b], side_b.hi[b]
    similar = live & (hi_a + hi_b < similar_below)
    dissimilar = ~live | (np.maximum(lo_a - hi_b, lo_b - hi_a) > dissimilar_above)
    unsure = np.flatnonzero(~similar & ~dissimilar)
    for lo in range(0, len(unsure), PAIR_BLOCK):  # bounded temporaries: PAIR_BLOCK x D per gather
        k = unsure[lo:lo + PAIR_BLOCK]
        similar[k] = np.einsum("ij,ij->i", side_a.unit_of(a[k]), side_b.unit_of(b[k])) > tau
    return similar


def _near_similar_mask(a: np.ndarray, b: np.ndarray, side_a: _Side, side_b: _Side, radius2: float, tau: float,
                       limits: tuple[float, float]) -> np.ndarray:
    """Mask of the pairs ``(a, b)`` strictly closer than the radius, in the same scene and similar."""
    xa, ya, za = side_a.axes
    xb, yb, zb = side_b.axes
    d = xa[a] - xb[b]
    d2 = d * d
    d = ya[a] - yb[b]
    d2 += d * d
    d = za[a] - zb[b]
    d2 += d * d  # (dx^2 + dy^2) + dz^2, the order of np.square(.).sum(axis=1)
    keep = np.flatnonzero(d2 < radius2)
    keep = keep[side_a.scene[a[keep]] == side_b.scene[b[keep]]]
    keep = keep[_similar(a[keep], b[keep], side_a, side_b, tau, limits)]
    mask = np.zeros(len(a), dtype=bool)
    mask[keep] = True
    return mask


_KEY_MIX = np.array([1, 1 << 21, 1 << 42], dtype=np.uint64)
_SCENE_MIX = np.uint64(0x9E3779B97F4A7C15)


def _cell_keys(cells: np.ndarray, scene: np.ndarray) -> np.ndarray:
    """A uint64 key per (scene, cell): 21 bits per axis, the scene mixed in. Different cells may
    share a key (wrap-around); that only adds pairs, which the exact check drops."""
    key = ((cells.astype(np.uint64) & np.uint64((1 << 21) - 1)) * _KEY_MIX).sum(axis=-1, dtype=np.uint64)
    return key ^ (scene.astype(np.uint64) * _SCENE_MIX)


class _AcceptedGrid:
    """Accepted rows entered in every grid cell of the box ``pos +- radius`` around them; within a
    cell, the rows nearest the cell's centre come first (the likeliest to suppress a row in it)."""

    def __init__(self, radius: float, scale: float) -> None:
        # cells of at least scale / 2^50, so that cell indices stay far inside int64 (larger cells
        # only list more rows per cell)
        self.cell = max(radius / CELLS_PER_RADIUS, scale * 2.0 ** -50)
        # the box is widened by more than the rounding of pos +- radius, so no pair is ever missed
        self.reach = radius * (1.0 + 1e-9) + 8.0 * np.finfo(np.float64).eps * scale
        self.keys = np.zeros(0, dtype=np.uint64)
        self.members = np.zeros(0, dtype=np.int64)
        self.pending: list[tuple[np.ndarray, np.ndarray, int]] = []

    def cells_of(self, pos: np.ndarray) -> np.ndarray:
        return np.floor(pos / self.cell).astype(np.int64)

    def add(self, pos: np.ndarray, scene: np.ndarray, first: int) -> None:
        """Queue accepted rows numbered ``first, first + 1, ...``."""
        self.pending.append((pos, scene, first))

    def _flush(self) -> None:
        keys, members, rank = [], [], []
        for pos, scene, first in self.pending:
            for lo in range(0, len(pos), GRID_BLOCK):  # bounded temporaries: GRID_BLOCK x span^3 cells
                block = pos[lo:lo + GRID_BLOCK]
                low = self.cells_of(block - self.reach)
                high = self.cells_of(block + self.reach)
                steps = np.arange(int((high - low).max()) + 1)
                offsets = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
                cells = low[:, None, :] + offsets[None, :, :]  # [A, span^3, 3]
                row, slot = np.nonzero((cells <= high[:, None, :]).all(axis=2))
                cells = cells[row, slot]
                keys.append(_cell_keys(cells, scene[lo:lo + GRID_BLOCK][row]))
                members.append(first + lo + row.astype(np.int64))
                # how far the cell is from the row's own cell (0 = its own cell), in cells
                rank.append(np.abs(cells - self.cells_of(block)[row]).sum(axis=1).astype(np.int8))
        self.pending = []
        keys, members, rank = np.concatenate(keys), np.concatenate(members), np.concatenate(rank)
        # by cell; within a cell the rows whose own cell it is first, then the rows of the cells next
        # to it, ...: the likeliest to suppress a row in the cell come first
        by_key = np.argsort(rank, kind="stable")
        by_key = by_key[np.argsort(keys[by_key], kind="stable")]
        # merge with the rows entered before (a stable sort of two sorted runs: linear time); in a
        # cell they keep coming first
        keys, members = np.concatenate([self.keys, keys[by_key]]), np.concatenate([self.members, members[by_key]])
        by_key = np.argsort(keys, kind="stable")
        self.keys, self.members = keys[by_key], members[by_key]

    def lookup(self, pos: np.ndarray, scene: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(start, count)`` per row of ``pos``: its cell's accepted rows are
        ``members[start:start + count]``."""
        if self.pending:
            self._flush()
        keys, inverse = np.unique(_cell_keys(self.cells_of(pos), scene), return_inverse=True)
        start = np.searchsorted(self.keys, keys, side="left")
        count = np.searchsorted(self.keys, keys, side="right") - start
        return start[inverse], count[inverse]


def _suppressed_by_accepted(side: _Side, accepted: _Side, grid: _AcceptedGrid, radius2: float, tau: float,
                            limits: tuple[float, float]) -> np.ndarray:
    """Mask of the chunk's rows near and similar to an accepted row: the accepted rows listed in a
    row's cell are tried in turn (nearest the cell centre first) until one suppresses it."""
    pos = np.column_stack(side.axes)
    start, count = grid.lookup(pos, side.scene)
    suppressed = np.zeros(len(count), dtype=bool)
    pending = np.flatnonzero(count > 0)
    step = 0
    while len(pending):
        hit = _near_similar_mask(pending, grid.members[start[pending] + step], side, accepted, radius2, tau, limits)
        suppressed[pending[hit]] = True
        step += 1
        pending = pending[~hit & (count[pending] > step)]
    return suppressed


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
    if budget == 0 or len(order) == 0:
        return np.zeros(0, dtype=np.int64)
    radius = float(radius)
    tau = float(tau)
    radius2 = radius * radius
    gap = 4.0 * radius + 1.0  # distance between scenes along the fourth axis (> radius)
    xyz = np.asarray(xyz)
    query_r = radius * (1.0 + 1e-6) + 1e-12  # the exact check follows: never miss a boundary pair

    angles: _Angles | None = None
    error = ERROR_ULPS * (features.shape[1] + 8) * 2.0 ** -24
    # angle sums below the first certainly give a float32 cosine above tau; angle differences above
    # the second certainly give one at most tau (slack for the float64 arithmetic of the bounds)
    limits = (float(np.arccos(np.clip(tau + error, -1.0, 1.0))) - 1e-9,
              float(np.arccos(np.clip(tau - error, -1.0, 1.0))) + 1e-9)
    grid: _AcceptedGrid | None = None

    acc_rows: list[np.ndarray] = []
    acc_parts: list[tuple[np.ndarray, ...]] = []
    accepted: _Side | None = None
    count = 0
    left = int(budget)
    start = 0
    rate = 1.0
    while left > 0 and start < len(order):
        size = FIRST_CHUNK if start == 0 else int(np.ceil(1.1 * left / max(rate, 1.0 / 64)))
        size = int(np.clip(size, MIN_CHUNK, MAX_CHUNK))
        rows = order[start:start + size]
        start += len(rows)
        if angles is None:
            angles = _Angles(features, rows)
        elif angles.all is None and start - len(rows) >= len(features) // 8 and len(order) - start > len(features) // 4:
            angles.summarise_all()  # a long walk (1/8 walked, 1/4 to go): read every row once, in storage order
        pos = xyz[rows].astype(np.float64)
        scene = scene_rank[rows]
        side = _Side(rows, pos, scene, angles(rows), features)

        # (1) against the rows accepted in earlier chunks
        keep = np.ones(len(rows), dtype=bool)
        if count:
            if accepted is None:
                parts = [np.concatenate([p[k] for p in acc_parts]) for k in range(7)]
                acc_parts = [tuple(parts)]
                accepted = _Side(parts[0], parts[1], parts[2], (parts[3], parts[4], parts[5]), features, parts[6])
            keep = ~_suppressed_by_accepted(side, accepted, grid, radius2, tau, limits)
        idx = np.flatnonzero(keep)

        # (2) among the survivors of this chunk, in walk order
        if len(idx) > 1:
            pts4 = np.column_stack([pos[idx], scene[idx] * gap])
            pairs = cKDTree(pts4).query_pairs(query_r, output_type="ndarray").astype(np.int64)
            if len(pairs):
                lo, hi = idx[np.minimum(pairs[:, 0], pairs[:, 1])], idx[np.maximum(pairs[:, 0], pairs[:, 1])]
                edge = _near_similar_mask(lo, hi, side, side, radius2, tau, limits)
                local = np.full(len(rows), -1, dtype=np.int64)
                local[idx] = np.arange(len(idx))
                idx = idx[_resolve(len(idx), local[lo[edge]], local[hi[edge]])]
        taken = idx[:left]
        rate = max(len(idx), 1) / len(rows)
        left -= len(taken)
        if len(taken):
            acc_rows.append(rows[taken])
            if left > 0 and start < len(order):  # another chunk follows: keep what step (1) needs
                if grid is None:
                    grid = _AcceptedGrid(radius, float(np.abs(xyz).max()))
                grid.add(pos[taken], scene[taken], count)
                unit = unit_rows(features[rows[taken]])[0]
                acc_parts.append((rows[taken], pos[taken], scene[taken], side.live[taken], side.lo[taken],
                                  side.hi[taken], unit))
                accepted = None
            count += len(taken)
    return np.concatenate(acc_rows) if acc_rows else np.zeros(0, dtype=np.int64)
