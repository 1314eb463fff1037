"""From scenes to network inputs: input features, augmentation, voxelisation, batching.

Pure functions of arrays and an explicit ``numpy.random.Generator``; no file I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pcal_cli.data.scene import Scene
from pcal_cli.geometry.voxels import voxel_grid
from pcal_cli.sparse import SparseTensor


@dataclass
class Voxelized:
    """One scene on the voxel grid: ``coords`` (V, 3) int32, ``feats`` (V, C) float32,
    ``labels`` (V,) int64 (-1 unknown) and ``inverse`` (N,) int64 mapping points to voxels."""

    coords: np.ndarray
    feats: np.ndarray
    labels: np.ndarray
    inverse: np.ndarray


def input_channels(channels: list[str]) -> int:
    """Feature width: x y z (centred) plus 3 for rgb, 1 for intensity and 1 for nir."""
    return 3 + 3 * ("rgb" in channels) + ("intensity" in channels) + ("nir" in channels)


def point_features(xyz: np.ndarray, scene: Scene, channels: list[str], rgb: np.ndarray | None = None,
                   rows: np.ndarray | None = None) -> np.ndarray:
    """Per-point input features: x, y centred on the scene, z above its lowest point (metres),
    colours in -0.5..0.5, intensity then nir each divided by its 99th percentile (always in
    this order, whatever the order of ``channels``). With ``rows`` only those points' features
    are built (the centre and the percentiles are still the whole scene's), so a huge scene
    never holds the features of every point."""
    pick = (lambda a: a) if rows is None else (lambda a: a[rows])  # noqa: E731
    centre = np.array([xyz[:, 0].mean(), xyz[:, 1].mean(), xyz[:, 2].min()], dtype=np.float32)
    parts = [pick(xyz).astype(np.float32) - centre]
    if "rgb" in channels:
        colours = pick(scene.rgb if rgb is None else rgb).astype(np.float32) / 255.0 - 0.5
        parts.append(colours)
    if "intensity" in channels:
        parts.append(percentile_scaled(scene.intensity, pick)[:, None])
    if "nir" in channels:
        parts.append(percentile_scaled(scene.nir, pick)[:, None])
    return np.concatenate(parts, axis=1)


def percentile_scaled(values: np.ndarray, pick=lambda a: a) -> np.ndarray:
    """``pick(values)`` (float32) divided by the 99th percentile of all ``values`` (by 1 when
    that is not positive): intensity and nir come in any scanner's units."""
    values = values.astype(np.float32)
    scale = float(np.percentile(values, 99)) if len(values) else 1.0
    return pick(values) / (scale if scale > 0 else 1.0)


def augment(xyz: np.ndarray, rgb: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Random rotation about z, scaling 0.9-1.1, x/y flips, 1 cm jitter, colour jitter."""
    angle = rng.uniform(0.0, 2.0 * np.pi)
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    flips = np.where(rng.random(2) < 0.5, -1.0, 1.0)
    rotation[:, :2] *= flips
    scale = rng.uniform(0.9, 1.1)
    out = (xyz.astype(np.float64) @ rotation.T) * scale
    out += np.clip(rng.normal(0.0, 0.01, out.shape), -0.05, 0.05)
    if rgb is not None:
        gain = rng.uniform(0.8, 1.2)
        shift = rng.uniform(-20.0, 20.0, 3)
        rgb = np.clip(rgb.astype(np.float64) * gain + shift + rng.normal(0.0, 3.0, rgb.shape), 0, 255).astype(np.uint8)
    return out.astype(np.float32), rgb


def voxelize(xyz: np.ndarray, feats: np.ndarray, labels: np.ndarray, voxel_size: float,
             num_classes: int) -> Voxelized:
    """Quantise points to voxels; a voxel's features are its first point's, its label the
    majority of its points' *known* labels (-1 when none is known; ties go to the lower id)."""
    cells, first, inverse = voxel_grid(xyz, voxel_size)
    cells -= np.minimum(cells.min(axis=0), 0) if len(cells) else 0  # negative cells shifted to 0
    voxels = len(first)
    known = labels >= 0
    votes = np.bincount(inverse[known] * num_classes + labels[known].astype(np.int64),
                        minlength=voxels * num_classes).reshape(voxels, num_classes)
    voxel_labels = np.where(votes.max(axis=1) > 0, votes.argmax(axis=1), -1)
    return Voxelized(coords=cells.astype(np.int32), feats=feats[first].astype(np.float32),
                     labels=voxel_labels.astype(np.int64), inverse=inverse.astype(np.int64))


def crop(xyz: np.ndarray, max_points: int, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``max_points`` points nearest to a random labelled point (all when fewer).

    One pass over the points (squared distances, then a partial sort): a k-d tree built at every
    step cost seconds per step on scenes of millions of points (13 s at 10 M)."""
    if len(xyz) <= max_points:
        return np.arange(len(xyz))
    centre = xyz[_crop_centre(len(xyz), labels, rng)].astype(np.float64)
    distance = np.zeros(len(xyz))
    for axis in range(3):
        distance += np.square(xyz[:, axis] - centre[axis])  # float64: the centre's precision
    return np.sort(np.argpartition(distance, max_points - 1)[:max_points])


def _crop_centre(points: int, labels: np.ndarray, rng: np.random.Generator) -> int:
    """The random centre of a crop: a labelled point (any point when none is labelled)."""
    candidates = np.flatnonzero(labels >= 0)
    return int(rng.choice(candidates) if len(candidates) else rng.integers(points))


def skip_crop_and_augment(points: int, labels: np.ndarray, has_rgb: bool, max_points: int,
                          rng: np.random.Generator) -> None:
    """Advance ``rng`` exactly as :func:`crop` then :func:`augment` would on a scene of ``points``
    points, without cropping or transforming anything.

    Data-parallel training uses it for the scenes of a step that other processes train on, so the
    scenes after them get the same random draws as in one process. :func:`augment`'s draws depend
    only on the shapes of its inputs, so it runs on zeros of the cropped shape.
    """
    if points > max_points:
        _crop_centre(points, labels, rng)
    kept = min(points, max_points)
    augment(np.zeros((kept, 3), np.float32), np.zeros((kept, 3), np.uint8) if has_rgb else None, rng)


def collate(items: list[Voxelized], device: torch.device) -> tuple[SparseTensor, torch.Tensor]:
    """Batch voxelised scenes into one SparseTensor (batch index first) and the voxel labels."""
    coords = np.concatenate([np.concatenate([np.full((len(v.coords), 1), b, np.int32), v.coords], axis=1)
                             for b, v in enumerate(items)])
    feats = np.concatenate([v.feats for v in items])
    labels = np.concatenate([v.labels for v in items])
    tensor = SparseTensor(torch.from_numpy(feats).to(device), torch.from_numpy(coords).to(device))
    return tensor, torch.from_numpy(labels).to(device)
