"""WSegPC's tag drop ("drop the ubiquitous class"), adapted to pcal's regions: while training on
scene tags, remove the floor, the ceiling or the walls from a scene together with that class's tag.

Why: floors, walls and ceilings are in nearly every indoor scene, so a loss on scene tags alone
never sees a scene without them and cannot tell where they are. A view of the scene with, say, the
floor cut away and ``floor`` cleared from its tags is a negative example that says "these other
points are not floor".

The rule (numpy in, numpy out; randomness only from the generator given):

1. **Structural classes** are found by name in the project's class table (case-insensitive):
   ``floor`` (the bottom face of the scene's bounding box), ``ceiling`` (the top face) and
   ``wall`` (the four vertical faces: lowest and highest x and y). A project without such
   classes (outdoor data, other names) never drops anything.
2. **A class's surface** (:func:`structural_surfaces`, computed once per scene on the whole
   scene, before any crop) is the set of regions (the PLY's ``region`` field, id >= 0) lying in
   the plane of one of the class's faces: the face's plane is the median coordinate of the points
   within ``band`` = 0.2 m of the bounding-box face, and a region lies in it when at least
   ``share`` = 70 % of its points are within ``coplanar`` = 3 cm of that plane (for the walls:
   of any of the four). So a door leaf or a window pane recessed a few centimetres into the wall
   is not part of the wall's surface and stays in the view with its tag. ``coplanar = 0`` gives
   the earlier rule: every region with 70 % of its points within 0.2 m of the face. Points
   without a region never belong to a surface.
3. **The drop** (:func:`tag_drop`): for each structural class that is tagged in the scene and has
   a non-empty surface, in class order, one uniform draw; below ``p`` (0.5) the surface's points
   are removed from the view and the class is cleared from the view's tags, unless a point that
   stays is *known* (a point label of the round, never the ground truth) to be of that class, or
   fewer than :data:`MIN_KEPT` points would stay: then that class is kept and nothing is removed
   for it. With ``p = 0`` nothing is drawn and nothing dropped. Other tags stay: whether every
   point of another class left with the surface (a door flush with the wall) cannot be known from
   tags, and a round's few known points cannot tell it either (a known point of a class inside the
   surface says nothing of that class's unknown points elsewhere); the coplanar rule of step 2 is
   what keeps recessed objects, and their tags, in the view.

Where pcal differs from the release, and why: the release removes the single largest superpoint
inside a 0.5 m slab at the floor (and ceiling), and the largest in each of four 0.5 m wall slabs,
then clears "that class" from the 3D tags (the class is fixed by the slab). Its superpoints come
from planar region growing, so the largest one in the floor slab is, in practice, the whole floor.
pcal's regions are supervoxels about 1 m across (or grid cells, or k-means chunks): the largest
region near the floor is one patch of it, and clearing ``floor`` from the tags while the rest of
the floor stays in the view would teach the network that the floor is not floor. pcal therefore
removes the whole surface (every region lying on the face) and says which class by the face, as
the release does; the thinner band (0.2 m, not a 0.5 m slab) and the share keep most chair legs,
low furniture and objects standing against a wall out of the surface. Known point labels, when a
round has some, veto a drop that would contradict them.

The band and the share were checked on pcal's synthetic rooms (supervoxel regions, 40k points;
the ground truth used for this check only, never in training): the surfaces found hold 99 % /
92 % / 81 % points of their class (ceiling / floor / walls; the rest of the walls' are mostly
doors, windows and boards in the wall's plane) and cover 99 % / 94 % / 98 % of that class's
points. A 0.1 m band found only two thirds of the walls' points, a 90 % share four fifths of the
floor's (regions that mix floor with the foot of furniture fall short).

Limits shared with the release: the faces are those of the axis-aligned bounding box (rooms are
assumed axis-aligned with z up), and objects lying in a wall's plane (doors, windows, boards
flush with the wall) are removed with the wall while their tags stay.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pcal_cli.errors import PcalError

#: Default probability of dropping each tagged structural class (WSegPC's 0.5).
TAG_DROP = 0.5
#: A point lies on a face when it is within this distance of it (metres).
SURFACE_BAND = 0.2
#: A region lies on a face when at least this share of its points do.
SURFACE_SHARE = 0.7
#: A point lies in a face's plane when it is within this distance of it (metres); 0: the band rule.
SURFACE_COPLANAR = 0.03
#: A drop that would leave fewer points than this in the view is not made.
MIN_KEPT = 2
#: Structural class names and the bounding-box faces they lie on (axis, 0 = lowest / 1 = highest).
STRUCTURAL_FACES: dict[str, tuple[tuple[int, int], ...]] = {
    "floor": ((2, 0),),
    "ceiling": ((2, 1),),
    "wall": ((0, 0), (0, 1), (1, 0), (1, 1)),
}


def structural_classes(classes: Sequence[str]) -> dict[int, tuple[tuple[int, int], ...]]:
    """``{class index: faces}`` for the classes of ``classes`` named floor, ceiling or wall."""
    found = {}
    for index, name in enumerate(classes):
        faces = STRUCTURAL_FACES.get(str(name).strip().lower())
        if faces is not None:
            found[index] = faces
    return found


def _check_band_share(band: float, share: float) -> tuple[float, float]:
    band, share = float(band), float(share)
    if not band > 0 or not 0 < share <= 1:
        raise PcalError(f"tag drop: band must be > 0 and share in (0, 1], got {band} and {share}")
    return band, share


def structural_surfaces(xyz: np.ndarray, region: np.ndarray, classes: Sequence[str],
                        band: float = SURFACE_BAND, share: float = SURFACE_SHARE,
                        coplanar: float = SURFACE_COPLANAR) -> dict[int, np.ndarray]:
    """``{class index: sorted region ids}``: the regions lying on each structural class's faces
    (module docstring, step 2); classes whose surface is empty are left out."""
    band, share = _check_band_share(band, share)
    xyz = np.asarray(xyz)
    region = np.asarray(region)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or region.shape != (len(xyz),):
        raise PcalError(f"tag drop: expected xyz [N, 3] and region [N], got {xyz.shape} and {region.shape}")
    structural = structural_classes(classes)
    has_region = region >= 0
    if not structural or not has_region.any():
        return {}
    points = xyz[has_region].astype(np.float64)
    ids, inverse = np.unique(region[has_region], return_inverse=True)
    inverse = inverse.reshape(-1)
    sizes = np.bincount(inverse, minlength=len(ids))
    low, high = xyz.min(axis=0).astype(np.float64), xyz.max(axis=0).astype(np.float64)
    surfaces = {}
    for index, faces in structural.items():
        near = np.zeros(len(points), dtype=bool)
        for axis, side in faces:
            distance = points[:, axis] - low[axis] if side == 0 else high[axis] - points[:, axis]
            in_band = distance <= band
            if coplanar > 0 and in_band.any():
                plane = float(np.median(points[in_band, axis]))
                near |= np.abs(points[:, axis] - plane) <= coplanar
            else:
                near |= in_band
        on_face = np.bincount(inverse, weights=near, minlength=len(ids)) >= share * sizes
        if on_face.any():
            surfaces[index] = ids[on_face].astype(np.int64)
    return surfaces


def tag_drop(tags: np.ndarray, region: np.ndarray, known: np.ndarray, surfaces: dict[int, np.ndarray],
             p: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(keep [N] bool, tags [C] bool, dropped class indices)`` for one view of a scene.

    ``tags [C]``: the scene's tags; ``region [N]``: its region ids; ``known [N]``: the round's
    point labels (-1 unknown); ``surfaces``: :func:`structural_surfaces` of the scene; ``p``: the
    drop probability of each tagged structural class (module docstring, step 3).
    """
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise PcalError(f"tag drop: the probability must lie in [0, 1], got {p}")
    tags = np.asarray(tags)
    if tags.ndim != 1 or not (tags.dtype == bool or np.isin(tags, (0, 1)).all()):
        raise PcalError("tag drop: tags must be a [C] vector of bool or 0/1")
    tags = tags.astype(bool)
    region = np.asarray(region)
    known = np.asarray(known)
    if known.shape != region.shape or region.ndim != 1:
        raise PcalError(f"tag drop: region and known labels must be [N], got {region.shape} and {known.shape}")
    keep = np.ones(len(region), dtype=bool)
    dropped: list[int] = []
    if p == 0.0:
        return keep, tags.copy(), dropped
    out = tags.copy()
    for index in sorted(surfaces):
        if index >= len(tags) or not tags[index] or not len(surfaces[index]):
            continue
        if rng.random() >= p:
            continue
        stays = keep & ~np.isin(region, surfaces[index])
        if int(stays.sum()) < MIN_KEPT or bool((known[stays] == index).any()):
            continue
        keep = stays
        out[index] = False
        dropped.append(int(index))
    return keep, out, dropped
