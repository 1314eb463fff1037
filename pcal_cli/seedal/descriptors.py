"""Per-scene descriptor sets for SeedAL: one row per region (or image, or pooled model feature).

SeedAL describes each scene by a *set* of vectors, clusters the set and compares scenes through
their cluster centres (:mod:`pcal_cli.seedal.diversity`). The paper's vectors are DINO features
of the scene's photographs; pcal has three sources:

- :func:`region_descriptors`: hand-made geometric and colour features of each region, computed
  from the points only (the default: no images and no weights needed);
- :func:`model_descriptors`: a network's per-point features, mean-pooled per region;
- :func:`image_descriptors`: a user's ``.npy`` file of image features (e.g. DINO), one per scene.

Hand-made features have very different scales and are mostly non-negative, so the rows of the
whole dataset are standardised together (:func:`normalise_descriptors`) before clustering.
Ground truth (``scene.label``) is never read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

from pcal_cli.data.scene import Scene
from pcal_cli.errors import PcalError
from pcal_cli.geometry.neighbours import estimate_normals
from pcal_cli.geometry.regions import grid_cells

#: Names of the columns of :func:`region_descriptors`, in order.
DESCRIPTOR_NAMES: tuple[str, ...] = (
    "red", "green", "blue", "colour_spread",
    "linearity", "planarity", "scattering",
    "normal_z_0", "normal_z_1", "normal_z_2", "normal_z_3", "normal_z_4", "normal_z_5",
    "height", "log_points", "log_length", "log_width", "log_height_extent", "log_density",
)
NORMAL_NEIGHBOURS = 16  # k of the normal estimation
NORMAL_BINS = 6  # bins of |n_z| over [0, 1]: 0 = vertical surface (wall), last = horizontal (floor)
FALLBACK_CELL = 1.0  # metres: grid cells stand in for regions when a scene has none
FLOOR_PERCENTILE = 2.0  # the floor height is this percentile of the scene's z
MIN_AREA = 0.01  # m^2: area floor in the density, so a point-like region is not infinitely dense


def region_descriptors(scene: Scene, normals: np.ndarray | None = None) -> np.ndarray:
    """One descriptor row per region of ``scene``: ``[R, 19]`` float32 (columns: ``DESCRIPTOR_NAMES``).

    Rows follow the ascending ids of the regions present (``scene.region >= 0``; points with
    ``-1`` are left out). A scene with no region at all is cut into 1 m grid cells of all its
    points instead. Per region, all computed with ``bincount`` over the points (no loop):

    - colour: mean RGB in ``[0, 1]`` and the colour spread (root mean per-channel variance);
      zeros when the scene has no colour;
    - shape: with ``l1 >= l2 >= l3`` the eigenvalues of the region's coordinate covariance,
      linearity ``(l1-l2)/l1``, planarity ``(l2-l3)/l1``, scattering ``l3/l1`` (all 0 when
      ``l1 = 0``, e.g. a one-point region);
    - orientation: the fraction of the region's points in each of 6 equal bins of ``|n_z|``, with
      normals from ``estimate_normals`` (k=16) over the whole scene;
    - height: mean z minus the scene's 2nd-percentile z (a robust floor level);
    - size: ``log(1 + points)``, and ``log(1 + extent)`` of the two principal extents and of the
      vertical extent, where the extent of a spread with variance ``v`` is ``sqrt(12 v)`` (the
      length of a uniform segment of that variance): unlike a bounding box, these do not depend
      on how the room is turned about the vertical axis;
    - density: ``log(points / area)`` with area = the product of the two principal extents (floored
      at 0.01 m^2), the points per m^2 of the surface; it works for walls too, whose xy bounding box
      is nearly empty.

    ``normals`` ``(N, 3)``: the scene's unit normals when already computed (they take nearly all of
    the time: about 8 s per million points on two busy cores); by default ``estimate_normals``.
    ``scene.label`` (ground truth) is never read.
    """
    xyz = scene.xyz
    n = len(xyz)
    if n == 0:
        raise PcalError(f"scene '{scene.name}' has no points: no descriptors can be computed")
    region = scene.region
    valid = region >= 0
    if valid.any():
        ids = region[valid].astype(np.int64)
    else:
        valid = np.ones(n, dtype=bool)
        ids = grid_cells(xyz, FALLBACK_CELL).astype(np.int64)
    inv, r = _dense_ids(ids)
    count = np.bincount(inv, minlength=r).astype(np.float64)

    def region_mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(inv, weights=values, minlength=r) / count

    pts = xyz[valid].astype(np.float64)
    mean = np.stack([region_mean(pts[:, d]) for d in range(3)], axis=1)
    dev = pts - mean[inv]
    cov = np.empty((r, 3, 3))
    for a in range(3):
        for b in range(a, 3):
            cov[:, a, b] = cov[:, b, a] = region_mean(dev[:, a] * dev[:, b])
    del dev
    values = np.clip(np.linalg.eigvalsh(cov), 0.0, None)  # ascending: l3, l2, l1
    l3, l2, l1 = values[:, 0], values[:, 1], values[:, 2]
    top = np.where(l1 > 0, l1, 1.0)
    shape = np.stack([(l1 - l2) / top, (l2 - l3) / top, l3 / top], axis=1) * (l1 > 0)[:, None]

    colour = np.zeros((r, 4))
    if scene.rgb is not None:
        rgb = scene.rgb[valid].astype(np.float64) / 255.0
        colour[:, :3] = np.stack([region_mean(rgb[:, c]) for c in range(3)], axis=1)
        spread = rgb - colour[inv, :3]
        colour[:, 3] = np.sqrt(np.clip(region_mean(np.square(spread).mean(axis=1)), 0.0, None))

    if normals is None:
        normals = estimate_normals(xyz, k=NORMAL_NEIGHBOURS)
    normals = np.asarray(normals)
    if normals.shape != (n, 3):
        raise PcalError(f"normals have shape {normals.shape}, expected ({n}, 3)")
    normals = normals[valid]
    bins = np.minimum((np.abs(normals[:, 2]) * NORMAL_BINS).astype(np.int64), NORMAL_BINS - 1)
    histogram = np.bincount(inv * NORMAL_BINS + bins, minlength=r * NORMAL_BINS).reshape(r, NORMAL_BINS)
    histogram = histogram / count[:, None]

    floor = float(np.percentile(xyz[:, 2], FLOOR_PERCENTILE))
    height = mean[:, 2] - floor
    length, width = np.sqrt(12.0 * l1), np.sqrt(12.0 * l2)
    vertical = np.sqrt(12.0 * np.clip(cov[:, 2, 2], 0.0, None))
    density = np.log(count / np.maximum(length * width, MIN_AREA))
    size = np.stack([np.log1p(count), np.log1p(length), np.log1p(width), np.log1p(vertical), density], axis=1)

    out = np.concatenate([colour, shape, histogram, height[:, None], size], axis=1)
    return out.astype(np.float32)


def zscore_descriptors(per_scene: list[np.ndarray]) -> list[np.ndarray]:
    """Each column standardised over all rows of all scenes: ``(x - mean) / std`` (float64).

    A constant column (same value in every row of the dataset) becomes 0. The scenes keep their
    row counts; a scene may have 0 rows, but the dataset needs at least one.
    """
    arrays = _check_sets(per_scene)
    stacked = np.concatenate(arrays, axis=0)
    mean = stacked.mean(axis=0)
    std = stacked.std(axis=0)
    constant = (np.ptp(stacked, axis=0) == 0) | (std <= 1e-12 * (1.0 + np.abs(mean)))
    scale = np.where(constant, 1.0, std)
    return [np.where(constant, 0.0, (a - mean) / scale) for a in arrays]


def normalise_descriptors(per_scene: list[np.ndarray]) -> list[np.ndarray]:
    """Z-score every column over the whole dataset, then scale each row to unit length (float32).

    SeedAL compares scenes by cosine similarity. Hand-made features are mostly non-negative
    (colours, fractions, log sizes) and on very different scales, so raw rows all point roughly the
    same way: their cosines collapse near 1, ``1 - mu`` near 0, and every pair weight loses
    contrast. Centring each column on the dataset mean (and scaling it by its spread) first makes
    the directions of the rows carry the differences between regions. Statistics are over all
    scenes' rows together, so every scene is measured in the same frame. A row at the mean of
    every column (all zeros after the z-score) stays zero.
    """
    out = []
    for z in zscore_descriptors(per_scene):
        norm = np.linalg.norm(z, axis=1, keepdims=True)
        out.append((z / np.where(norm > 0, norm, 1.0)).astype(np.float32))
    return out


def model_descriptors(features: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Per-point model features ``[N, D]`` mean-pooled per region: ``[R, D]`` float32.

    Rows follow the ascending ids of the regions present (``region >= 0``; points with ``-1`` are
    left out), the same order as :func:`region_descriptors`. At least one point needs a region.
    """
    features = np.asarray(features)
    region = np.asarray(region)
    if features.ndim != 2 or features.shape[1] < 1:
        raise PcalError(f"model features must be an (N, D) array, got shape {features.shape}")
    if region.shape != (len(features),):
        raise PcalError(f"region ids have shape {region.shape}, expected ({len(features)},)")
    if not np.issubdtype(region.dtype, np.integer):
        raise PcalError(f"region ids must be integers, got {region.dtype}")
    valid = region >= 0
    if not valid.any():
        raise PcalError("no point has a region (all region ids are -1): nothing to pool")
    values = features[valid].astype(np.float64)
    if not np.isfinite(values).all():
        raise PcalError("model features contain NaN or infinite values")
    inv, r = _dense_ids(region[valid].astype(np.int64))
    pool = csr_matrix((np.ones(len(inv)), (inv, np.arange(len(inv)))), shape=(r, len(inv)))
    sums = np.asarray(pool @ values)
    return (sums / np.bincount(inv, minlength=r)[:, None]).astype(np.float32)


def image_descriptors(path: Path) -> np.ndarray:
    """A scene's image features from a ``.npy`` file: ``[M, D]`` float32, one row per image (or patch).

    The file must hold one 2-D numeric array of shape ``(M, D)`` with ``M >= 1`` rows and
    ``D >= 1`` columns, all finite, saved with ``numpy.save`` (no pickled objects; loaded with
    ``allow_pickle=False``). For the paper's setting: DINO ViT-B/8 class tokens of a room's
    photographs (``D = 768``), or the patch keys of a scan's one image. Every scene of a dataset
    must use the same ``D``.
    """
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise PcalError(f"{path}: image features file not found") from None
    except (OSError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PcalError(f"{path}: not a readable .npy array ({reason})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        if hasattr(array, "close"):
            array.close()
        raise PcalError(f"{path}: expected one .npy array of shape (M, D), got an .npz archive")
    if array.dtype.kind not in "biuf":
        raise PcalError(f"{path}: image features must be numbers, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise PcalError(f"{path}: image features must have shape (M, D) with M, D >= 1, got {array.shape}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise PcalError(f"{path}: image features contain NaN or infinite values (or overflow float32)")
    return array


def _dense_ids(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Non-negative ids renumbered ``0..R-1`` in ascending order: ``(index per point, R)``.

    ``bincount`` when the ids are compact (the usual case: linear time), ``unique`` when they are
    sparse (a few huge ids would make a huge count array).
    """
    if len(ids) and int(ids.max()) <= 4 * len(ids) + 1024:
        present = np.bincount(ids) > 0
        return (np.cumsum(present) - 1)[ids], int(present.sum())
    values, inv = np.unique(ids, return_inverse=True)
    return inv.reshape(-1), len(values)


def _check_sets(per_scene: list[np.ndarray]) -> list[np.ndarray]:
    """Descriptor sets as float64 arrays with one shared column count, all finite, >= 1 row in all."""
    arrays = [np.asarray(a, dtype=np.float64) for a in per_scene]
    if not arrays:
        raise PcalError("no scene descriptors given")
    for index, a in enumerate(arrays):
        if a.ndim != 2:
            raise PcalError(f"descriptors of scene {index} must be 2-D (rows, features), got shape {a.shape}")
        if a.shape[1] != arrays[0].shape[1] or a.shape[1] < 1:
            raise PcalError(f"descriptors of scene {index} have {a.shape[1]} columns, scene 0 has {arrays[0].shape[1]}")
        if not np.isfinite(a).all():
            raise PcalError(f"descriptors of scene {index} contain NaN or infinite values")
    if sum(len(a) for a in arrays) == 0:
        raise PcalError("the scene descriptors have no rows at all")
    return arrays
