"""VCCS-like supervoxels: the ``supervoxel`` region builder and its indoor / outdoor presets.

Voxelise, seed on a coarser grid, run a local k-means over voxels on position, colour and
normal, split clusters into connected parts and merge the small ones (see :func:`supervoxels`
and ``docs/regions.md``). Supervoxels work on voxels, not points, and map back through the voxel
index, so a scene of millions of points costs the same as its (much smaller) set of occupied
voxels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from pcal_cli.errors import PcalError
from pcal_cli.geometry.grid import as_points, cell_means, check_size, group_by_cell, linear_keys
from pcal_cli.geometry.neighbours import estimate_normals, query_workers
from pcal_cli.geometry.regions.ids import check_int, contiguous

INDOOR: dict[str, float] = {"seed_resolution": 1.0, "voxel_resolution": 0.1}
OUTDOOR: dict[str, float] = {"seed_resolution": 10.0, "voxel_resolution": 0.5}
SUPERVOXEL_PRESETS: dict[str, dict[str, float]] = {"indoor": INDOOR, "outdoor": OUTDOOR}

COLOR_SCALE = 0.1  # C in the distance: RGB in [0, 1]; a colour difference of C counts like R_seed
SEARCH_RADIUS = 2.0  # candidate seeds lie within this many seed resolutions of a voxel
CANDIDATES = 16  # at most this many nearest seeds are compared per voxel and iteration
NEAR_VOXELS = 8  # an isolated small region looks for its merge target among these nearest voxels
NORMAL_NEIGHBOURS = 10  # voxel normals: covariance of the 10 nearest voxel centroids
VOXEL_CHUNK = 100_000  # voxels per batch in the assignment step (bounds memory)
CANDIDATE_CACHE = 40_000_000  # candidate lists up to this many entries (160 MB) are kept, not re-queried
CONVERGED = 0.001  # k-means stops once at most this fraction of voxels changes centre


def supervoxel_preset(name: str) -> dict[str, float]:
    """Seed and voxel resolutions of a named preset: ``indoor`` (1.0 / 0.1 m) or ``outdoor`` (10 / 0.5 m)."""
    try:
        return dict(SUPERVOXEL_PRESETS[name])
    except KeyError:
        known = ", ".join(SUPERVOXEL_PRESETS)
        raise PcalError(f"unknown supervoxel preset '{name}' (known: {known})") from None


def supervoxels(
    xyz: np.ndarray,
    rgb: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    seed_resolution: float = 1.0,
    voxel_resolution: float = 0.1,
    min_size: int = 100,
    spatial_weight: float = 1.0,
    color_weight: float = 0.2,
    normal_weight: float = 1.0,
    iterations: int = 10,
    preset: str | None = None,
) -> np.ndarray:
    """VCCS-like supervoxels: one int32 id per point, contiguous, every point assigned.

    1. Voxelise at ``voxel_resolution``: per voxel the centroid, the mean colour (``rgb`` as uint8
       0..255 or floats 0..1) and a normal (from point ``normals`` when given, else from the
       covariance of the 10 nearest voxel centroids).
    2. Seeds: in every occupied cell of a ``seed_resolution`` grid, the voxel nearest the cell's
       centre.
    3. Local k-means over voxels (at most ``iterations`` rounds, stopping once under 0.1 % of the
       voxels move): each voxel joins, among the seeds that started within 2 seed resolutions of
       it (at most 16), the centre minimising
       ``D = sqrt(w_s (d_s / R_seed)^2 + w_c (d_c / 0.1)^2 + w_n (1 - |n . n'|))``; centres move
       to their voxels' mean position, colour and (sign-aligned) normal.
    4. Each cluster is split into its connected parts under 26-adjacency of voxels, so a region
       never spans an empty gap of two voxels or more (except by step 5's isolated-region rule).
    5. Regions with fewer than ``min_size`` points are merged, round by round, into the
       neighbouring region nearest in ``D`` between region means (neighbours: 26-adjacent; for a
       region adjacent to none, regions among its voxels' 8 nearest voxels, else the nearest
       centroid). No point is dropped; with fewer than ``min_size`` points in all, one region.

    ``preset`` (``indoor`` / ``outdoor``) replaces the two resolutions with the preset's values.
    """
    if preset is not None:
        values = supervoxel_preset(preset)
        seed_resolution, voxel_resolution = values["seed_resolution"], values["voxel_resolution"]
    xyz = as_points(xyz)
    seed_res = check_size(seed_resolution, "seed_resolution")
    voxel_res = check_size(voxel_resolution, "voxel_resolution")
    if voxel_res > seed_res:
        raise PcalError(f"voxel_resolution ({voxel_res}) must not exceed seed_resolution ({seed_res})")
    min_size = check_int(min_size, "min_size", 0)
    iterations = check_int(iterations, "iterations", 1)
    w_s, w_c, w_n = (_check_weight(w, name) for w, name in (
        (spatial_weight, "spatial_weight"), (color_weight, "color_weight"), (normal_weight, "normal_weight")))
    n = len(xyz)
    if n == 0:
        return np.zeros(0, dtype=np.int32)

    keys, inverse, counts = group_by_cell(xyz, voxel_res)
    origin = xyz.min(axis=0).astype(np.float64)
    position = cell_means(xyz, inverse, counts)
    color = None
    if rgb is not None and w_c > 0:
        color = cell_means(_unit_colors(rgb, n), inverse, counts)
    normal = None
    if w_n > 0:
        if normals is not None:
            normal = _voxel_normals_from_points(normals, n, inverse, counts)
        else:
            normal = estimate_normals(position, k=NORMAL_NEIGHBOURS).astype(np.float64)

    seeds = _seed_voxels(position, origin, seed_res)
    label = _local_kmeans(position, color, normal, seeds, seed_res, (w_s, w_c, w_n), iterations)
    edges = _voxel_adjacency(keys)
    label = _split_disconnected(label, edges)
    label = _merge_small(label, counts, edges, position, color, normal, (w_s, w_c, w_n), seed_res,
                         min_size)
    return contiguous(label)[inverse].astype(np.int32)


def _seed_voxels(position: np.ndarray, origin: np.ndarray, seed_res: float) -> np.ndarray:
    """Per occupied seed cell, the voxel nearest the cell's centre (ties: lowest voxel index)."""
    cell = np.floor((position - origin) / seed_res).astype(np.int64)
    _, group = np.unique(linear_keys(cell), return_inverse=True)
    group = group.reshape(-1)
    dist = np.square(position - (origin + (cell + 0.5) * seed_res)).sum(axis=1)
    order = np.lexsort((dist, group))
    first = np.ones(len(order), dtype=bool)
    first[1:] = group[order[1:]] != group[order[:-1]]
    return order[first]


def _local_kmeans(position: np.ndarray, color: np.ndarray | None, normal: np.ndarray | None,
                  seeds: np.ndarray, seed_res: float, weights: tuple[float, float, float],
                  iterations: int) -> np.ndarray:
    """Assign voxels to centres by the combined distance, re-estimating centres, a few rounds.

    A voxel's candidates are the (at most 16) seeds whose initial position lies within
    2 seed resolutions of it; they are fixed across rounds (as in SLIC) while the centres move.
    A voxel with no candidate keeps its nearest seed. Stops early once fewer than 0.1 % of the
    voxels change centre.
    """
    w_s, w_c, w_n = weights
    v, s = len(position), len(seeds)
    # position and colour in one feature vector: its squared distance is the first two terms of D²
    parts = [position * np.sqrt(w_s) / seed_res]
    if color is not None:
        parts.append(color * np.sqrt(w_c) / COLOR_SCALE)
    feature = np.concatenate(parts, axis=1).astype(np.float32)
    unit = None if normal is None else normal.astype(np.float32)
    centre = np.zeros((s + 1, feature.shape[1]), dtype=np.float32)  # row s: placeholder
    centre[:s] = feature[seeds]
    centre_normal = None if unit is None else np.zeros((s + 1, 3), dtype=np.float32)
    if centre_normal is not None:
        centre_normal[:s] = unit[seeds]

    tree = cKDTree(position[seeds])
    _, label = tree.query(position, k=1, workers=query_workers(v))
    label = label.astype(np.int64)
    k = min(CANDIDATES, s)
    cached = v * k <= CANDIDATE_CACHE
    cache: dict[int, np.ndarray] = {}

    def candidates(start: int, stop: int) -> np.ndarray:
        if start in cache:
            return cache[start]
        _, cand = tree.query(position[start:stop], k=k, distance_upper_bound=SEARCH_RADIUS * seed_res,
                             workers=query_workers(stop - start))
        cand = cand.reshape(stop - start, k).astype(np.int32)  # s marks "no candidate"
        if cached:
            cache[start] = cand
        return cand

    w_n32 = np.float32(w_n)
    feature_t = np.ascontiguousarray(feature.T)
    unit_t = None if unit is None else np.ascontiguousarray(unit.T)
    for _ in range(iterations):
        centre_cols = [np.ascontiguousarray(centre[:, d]) for d in range(centre.shape[1])]
        if centre_normal is not None:
            normal_cols = [np.ascontiguousarray(centre_normal[:, d]) for d in range(3)]
        new = label.copy()
        for start in range(0, v, VOXEL_CHUNK):
            stop = min(start + VOXEL_CHUNK, v)
            cand = candidates(start, stop)
            # one feature dimension at a time: contiguous (m, k) arrays, much faster than (m, k, d)
            dist = np.zeros(cand.shape, dtype=np.float32)
            for d in range(feature.shape[1]):
                dist += np.square(centre_cols[d][cand] - feature_t[d, start:stop, None])
            if centre_normal is not None:
                dot = sum(normal_cols[d][cand] * unit_t[d, start:stop, None] for d in range(3))
                dist += w_n32 * (1.0 - np.minimum(np.abs(dot), 1.0))
            dist[cand == s] = np.inf
            best = cand[np.arange(stop - start), np.argmin(dist, axis=1)]
            reach = best != s
            new[start:stop][reach] = best[reach]
        changed = int(np.count_nonzero(new != label))
        label = new
        members = np.bincount(label, minlength=s)
        alive = np.flatnonzero(members > 0)
        centre[alive] = _group_mean(feature, label, members)[alive]
        if centre_normal is not None:
            sign = np.sign(np.einsum("vd,vd->v", unit, centre_normal[label]) + 1e-12)
            summed = _group_mean(unit * sign[:, None], label, members)
            length = np.linalg.norm(summed, axis=1)
            ok = (members > 0) & (length > 1e-9)
            centre_normal[:s][ok] = summed[ok] / length[ok, None]
        if changed <= v * CONVERGED:
            break
    return label


def _group_mean(values: np.ndarray, label: np.ndarray, members: np.ndarray) -> np.ndarray:
    out = np.empty((len(members), values.shape[1]))
    for d in range(values.shape[1]):
        out[:, d] = np.bincount(label, weights=values[:, d], minlength=len(members))
    return out / np.maximum(members, 1)[:, None]


def _voxel_adjacency(keys: np.ndarray) -> np.ndarray:
    """Pairs ``(i, j)``, ``i < j``, of voxels whose integer keys differ by at most 1 on every axis,
    as an ``(E, 2)`` int32 array (int64 beyond 2**31 voxels).

    ``keys`` must be distinct rows in lexicographic order (as returned by ``group_by_cell``).
    """
    v = len(keys)
    index_type = np.int32 if v < 2**31 else np.int64
    if v < 2:
        return np.zeros((0, 2), dtype=index_type)
    shifted = keys - keys.min(axis=0) + 1
    dims = shifted.max(axis=0) + 2
    if float(dims[0]) * float(dims[1]) * float(dims[2]) >= 2**62:  # astronomically wide scenes
        pairs = cKDTree(keys.astype(np.float64)).query_pairs(r=1.75, output_type="ndarray")
        return np.sort(pairs, axis=1).astype(index_type)
    pack = lambda k: (k[:, 0] * dims[1] + k[:, 1]) * dims[2] + k[:, 2]  # noqa: E731
    linear = pack(shifted)  # ascending, because keys are in lexicographic order
    pairs = []
    for offset in _HALF_NEIGHBOURHOOD:  # each offset is lexicographically positive: j > i
        target = pack(shifted + offset)
        pos = np.minimum(np.searchsorted(linear, target), v - 1)
        hit = np.flatnonzero(linear[pos] == target)
        pairs.append(np.stack([hit.astype(index_type), pos[hit].astype(index_type)], axis=1))
    return np.concatenate(pairs)


_HALF_NEIGHBOURHOOD = np.array(
    [(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)
     if (dx, dy, dz) > (0, 0, 0)], dtype=np.int64)  # 13 offsets: each pair of neighbours once


def _split_disconnected(label: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Connected components of each cluster under voxel adjacency, as new cluster ids."""
    same = edges[label[edges[:, 0]] == label[edges[:, 1]]]
    return _components(len(label), same)


def _components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component id of each of ``n`` nodes (numbered by their lowest node)."""
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, comp = connected_components(graph.tocsr(), directed=False)
    return comp.astype(np.int64)


def _merge_small(label: np.ndarray, counts: np.ndarray, edges: np.ndarray, position: np.ndarray,
                 color: np.ndarray | None, normal: np.ndarray | None, weights: tuple[float, float, float],
                 seed_res: float, min_size: int) -> np.ndarray:
    """Merge regions under ``min_size`` points into neighbours until none is left (or one region).

    Each round, every small region picks one neighbouring region, the nearest in the supervoxel
    distance between region means (spatial term: the smallest gap between their voxels; colour
    and normal terms as in the clustering); ties go to more shared voxel adjacencies, then to a
    hash of the pair of ids. Neighbours are regions with a 26-adjacent voxel; a small region touching
    none looks at the 8 nearest voxels of each of its voxels, and failing that at the nearest
    region centroids. A pick is carried out when its target is large or when two small regions
    pick each other; other small regions wait a round. The order on pairs is symmetric, so mutual
    picks always exist: every round merges something, and small regions never snowball into one.
    """
    w_s, w_c, w_n = weights
    label = contiguous(label)
    tree = None
    while True:
        r = int(label.max()) + 1
        size = np.bincount(label, weights=counts, minlength=r)
        small = size < min_size
        if r == 1 or not small.any():
            return label
        vi, vj = edges[:, 0], edges[:, 1]
        la, lb = label[vi], label[vj]
        cross = la != lb
        touching = np.zeros(r, dtype=bool)
        touching[la[cross]] = touching[lb[cross]] = True
        useful = cross & (small[la] | small[lb])  # only pairs with a small side matter
        vi, vj = vi[useful], vj[useful]
        del la, lb, cross, useful
        lonely = small & ~touching
        if lonely.any():  # proximity pairs for small regions that touch no other region
            tree = cKDTree(position) if tree is None else tree
            near_i, near_j = _proximity_pairs(tree, position, label, np.flatnonzero(lonely[label]))
            vi, vj = np.concatenate([vi, near_i]), np.concatenate([vj, near_j])
        target = np.full(r, -1, dtype=np.int64)
        if len(vi):
            a, b, shared, gap = _region_pairs(label[vi], label[vj], _distances(position, vi, vj), r)
            # each unordered pair as a candidate for whichever of its sides is small
            first, second = small[a], small[b]
            ps = np.concatenate([a[first], b[second]])
            pd = np.concatenate([b[first], a[second]])
            shared = np.concatenate([shared[first], shared[second]])
            cost = w_s * np.square(np.concatenate([gap[first], gap[second]]) / seed_res)
            members = np.bincount(label, minlength=r)
            if color is not None and w_c > 0:
                mean = _group_mean(color, label, members)
                cost += w_c * np.square(mean[ps] - mean[pd]).sum(axis=1) / COLOR_SCALE**2
            if normal is not None and w_n > 0:
                axis = _principal_axes(normal, label, members)
                cost += w_n * (1.0 - np.minimum(np.abs((axis[ps] * axis[pd]).sum(axis=1)), 1.0))
            picked_src, picked = _pick(ps, pd, (-shared, cost))
            target[picked_src] = picked
        rest = np.flatnonzero(small & (target < 0))
        if len(rest):
            target[rest] = _nearest_centroid(label, position, rest, r)
        src = np.flatnonzero(target >= 0)
        tgt = target[src]
        accept = ~small[tgt] | (target[tgt] == src)
        if not accept.any():  # not reachable with the symmetric order; never stall regardless
            accept = src == src[np.argmin(size[src])]
        label = _components(r, np.stack([src[accept], tgt[accept]], axis=1))[label]


def _distances(position: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Euclidean distances between voxels ``i`` and ``j``, one axis at a time (small temporaries)."""
    total = np.zeros(len(i))
    for d in range(position.shape[1]):
        column = position[:, d]
        total += np.square(column[i] - column[j])
    return np.sqrt(total)


def _region_pairs(a: np.ndarray, b: np.ndarray, gap: np.ndarray,
                  r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Aggregate voxel pairs by unordered region pair ``{a, b}``: the pairs (low, high), how many
    voxel pairs join them, and the smallest gap between them."""
    key = np.minimum(a, b).astype(np.int64) * r + np.maximum(a, b)
    order = np.argsort(key, kind="stable")
    key, gap = key[order], gap[order]
    del order
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    shared = np.diff(np.r_[starts, len(key)])
    return key[starts] // r, key[starts] % r, shared, np.minimum.reduceat(gap, starts)


def _proximity_pairs(tree: cKDTree, position: np.ndarray, label: np.ndarray,
                     query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (voxel in ``query``, one of its 8 nearest voxels) that lie in different regions."""
    k = min(NEAR_VOXELS, len(position))
    out_i, out_j = [], []
    for start in range(0, len(query), VOXEL_CHUNK):
        chunk = query[start:start + VOXEL_CHUNK]
        _, near = tree.query(position[chunk], k=k, workers=query_workers(len(chunk)))
        near = near.reshape(len(chunk), k)
        differ = label[near] != label[chunk][:, None]
        rows, cols = np.nonzero(differ)
        out_i.append(chunk[rows])
        out_j.append(near[rows, cols])
    return np.concatenate(out_i), np.concatenate(out_j)


def _principal_axes(normal: np.ndarray, label: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Per group, the principal axis of the mean outer product of its unit normals (sign-free)."""
    moment = np.empty((len(members), 3, 3))
    for i in range(3):
        for j in range(i, 3):
            moment[:, i, j] = moment[:, j, i] = np.bincount(
                label, weights=normal[:, i] * normal[:, j], minlength=len(members))
    return np.linalg.eigh(moment)[1][:, :, 2]  # the scale does not change the eigenvectors


def _pick(ps: np.ndarray, pd: np.ndarray, keys: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per source ``ps``, the ``pd`` ranking first by ``keys`` (last key first), then by a hash of
    the unordered pair (symmetric, so exact ties cannot form chains of picks along regular
    structures); returns the distinct sources (ascending) and their picks."""
    order = np.lexsort((np.maximum(ps, pd), np.minimum(ps, pd), _pair_hash(ps, pd)) + keys + (ps,))
    first = np.r_[True, ps[order[1:]] != ps[order[:-1]]]
    return ps[order[first]], pd[order[first]]


def _pair_hash(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A deterministic, well-mixed 64-bit hash of the unordered pair ``{a, b}`` (splitmix64)."""
    x = (np.minimum(a, b).astype(np.uint64) << np.uint64(32)) ^ np.maximum(a, b).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _nearest_centroid(label: np.ndarray, position: np.ndarray, regions: np.ndarray, r: int) -> np.ndarray:
    """For each region in ``regions``, the other region whose voxel centroid is nearest."""
    centroid = _group_mean(position, label, np.bincount(label, minlength=r))
    k = min(NEAR_VOXELS + 1, r)
    _, near = cKDTree(centroid).query(centroid[regions], k=k)
    near = near.reshape(len(regions), k)
    ps, pd = np.repeat(regions, k), near.reshape(-1)
    other = ps != pd
    ps, pd = ps[other], pd[other]
    dist = np.linalg.norm(centroid[ps] - centroid[pd], axis=1)  # exactly symmetric
    _, picked = _pick(ps, pd, (dist,))
    return picked


def _voxel_normals_from_points(normals: np.ndarray, n: int, inverse: np.ndarray,
                               counts: np.ndarray) -> np.ndarray:
    """Per voxel, the principal axis of the mean outer product of its points' normals (sign-free)."""
    normals = np.asarray(normals, dtype=np.float64)
    if normals.shape != (n, 3):
        raise PcalError(f"normals have shape {normals.shape}, expected ({n}, 3)")
    return _principal_axes(normals, inverse, counts)


def _unit_colors(rgb: np.ndarray, n: int) -> np.ndarray:
    """Colours as floats in [0, 1]: integers are divided by 255, floats above 1 too."""
    rgb = np.asarray(rgb)
    if rgb.shape != (n, 3):
        raise PcalError(f"colours have shape {rgb.shape}, expected ({n}, 3)")
    scale = 255.0 if (np.issubdtype(rgb.dtype, np.integer) or (n and float(rgb.max()) > 1.0)) else 1.0
    return rgb.astype(np.float64) / scale


def _check_weight(value: Any, name: str) -> float:
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise PcalError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(weight) or weight < 0:
        raise PcalError(f"{name} must be a non-negative number, got {value!r}")
    return weight
