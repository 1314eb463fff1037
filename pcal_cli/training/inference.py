"""Running a trained model on a whole scene and mapping voxel outputs back to every point.

A scene is voxelised once, whole (:func:`scene_voxels`: the voxel grid, each voxel's input
features and the point -> voxel map; no per-point features are kept). The network then runs on
it in one pass, or, when the scene has more than ``Tiling.max_voxels`` voxels, tile by tile
(:func:`run_tiled`): the voxels are cut into boxes of at most ``max_voxels`` (median cuts along
the longest side, so dense and sparse parts get tiles of similar cost); each box runs with the
voxels within ``margin`` voxels around it as context and keeps the outputs of its own voxels
only. Every voxel gets exactly one output row, in the same order as an untiled pass, so callers
cannot tell the difference except in memory. Voxel coordinates are the scene's (not the tile's),
so strided layers group voxels the same way in a tile as in the whole scene: a voxel whose
receptive field lies inside its tile's context gets exactly the untiled output; near a tile's
edge the margin bounds the difference (see docs/scale.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pcal_cli.data.scene import Scene
from pcal_cli.sparse import SparseTensor
from pcal_cli.geometry.voxels import voxel_grid
from pcal_cli.training.data import Voxelized, collate, point_features

MAX_VOXELS = 1_000_000  # default: a scene with more voxels is run tile by tile
MARGIN_VOXELS = 32  # default context around a tile (1.6 m at 5 cm voxels)


@dataclass(frozen=True)
class Tiling:
    """How inference splits a large scene: tiles of at most ``max_voxels`` voxels, each run with
    ``margin`` voxels of context on every side."""

    max_voxels: int = MAX_VOXELS
    margin: int = MARGIN_VOXELS

    def __post_init__(self) -> None:
        if self.max_voxels < 1 or self.margin < 0:
            raise ValueError(f"tiling needs max_voxels >= 1 and margin >= 0, got {self}")


@dataclass
class ScenePrediction:
    """Voxel-level outputs and the map from points to voxels: ``logits[inverse]`` are per point."""

    logits: torch.Tensor  # [V, C] float32, on the CPU
    features: torch.Tensor  # [V, D] last decoder features, on the CPU
    inverse: np.ndarray  # [N] point -> voxel

    @property
    def point_labels(self) -> np.ndarray:
        return self.logits.argmax(dim=1).numpy()[self.inverse].astype(np.int16)


def scene_voxels(scene: Scene, channels: list[str], voxel_size: float) -> Voxelized:
    """A whole scene on the voxel grid, as :func:`~pcal_cli.training.data.voxelize` builds it
    (same voxels, order, coordinates and features; labels all -1), but built one coordinate
    column at a time and with the input features of each voxel's first point only."""
    xyz = scene.xyz
    if len(xyz) == 0:
        return Voxelized(np.zeros((0, 3), np.int32), np.zeros((0, 3), np.float32), np.zeros(0, np.int64),
                         np.zeros(0, np.int64))
    cells, first, inverse = voxel_grid(xyz, voxel_size)
    coords = cells - np.minimum(cells.min(axis=0), 0)  # voxelize's shift
    return Voxelized(coords=coords.astype(np.int32),
                     feats=point_features(xyz, scene, channels, rows=first).astype(np.float32),
                     labels=np.full(len(first), -1, dtype=np.int64),
                     inverse=inverse)


def scene_inputs(scene: Scene, channels: list[str], voxel_size: float, num_classes: int,
                 device: torch.device) -> tuple[SparseTensor, np.ndarray]:
    """The network input of a whole scene (no augmentation) and its point -> voxel map, in one
    piece (``num_classes`` is kept for callers; inference never looks at labels)."""
    voxels = scene_voxels(scene, channels, voxel_size)
    inputs, _ = collate([voxels], device)
    return inputs, voxels.inverse


def voxel_tiles(coords: np.ndarray, max_voxels: int, margin: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(core, context)`` voxel rows (sorted) of each tile: the cores partition the voxels, each
    holds at most ``max_voxels``, and a context is every voxel within ``margin`` (in voxels, per
    axis) of its core's box. One tile holds everything when there are at most ``max_voxels``."""
    coords = np.asarray(coords, dtype=np.int64)
    everything = np.arange(len(coords))
    if len(coords) <= max_voxels:
        return [(everything, everything)]
    boxes = []
    stack = [(everything, np.full(3, np.iinfo(np.int64).min), np.full(3, np.iinfo(np.int64).max))]
    while stack:
        rows, lo, hi = stack.pop()
        if len(rows) <= max_voxels:
            boxes.append((rows, lo, hi))
            continue
        part = coords[rows]
        extent = part.max(axis=0) - part.min(axis=0)
        axis = int(np.argmax(extent))  # > 0: the voxels are unique and more than one
        values = part[:, axis]
        cut = int(np.partition(values, len(values) // 2)[len(values) // 2])  # the median voxel's coordinate
        left = values < cut
        if not left.any():  # the lower half all sits on the median coordinate
            cut += 1
            left = values < cut
        left_hi, right_lo = hi.copy(), lo.copy()
        left_hi[axis] = right_lo[axis] = cut
        stack.append((rows[~left], right_lo, hi))
        stack.append((rows[left], lo, left_hi))  # popped first: tiles run in a fixed order
    tiles = []
    for core, lo, hi in boxes:
        inside = np.ones(len(coords), dtype=bool)
        for axis in range(3):
            if lo[axis] > np.iinfo(np.int64).min:
                inside &= coords[:, axis] >= lo[axis] - margin
            if hi[axis] < np.iinfo(np.int64).max:
                inside &= coords[:, axis] < hi[axis] + margin
        tiles.append((np.sort(core), np.flatnonzero(inside)))
    return tiles


def run_tiled(voxels: Voxelized, device: torch.device, run: Callable[[SparseTensor], tuple[np.ndarray, ...]],
              tiling: Tiling | None = None) -> tuple[np.ndarray, ...]:
    """``run(inputs)`` over a whole voxelised scene, tile by tile when it is large (see the module
    notes). ``run`` returns numpy arrays with one row per input voxel; the result has one row per
    voxel of the scene, in the scene's voxel order."""
    tiling = tiling or Tiling()
    tiles = voxel_tiles(voxels.coords, tiling.max_voxels, tiling.margin)
    if len(tiles) == 1:
        return tuple(run(_inputs(voxels.coords, voxels.feats, device)))
    outputs: list[np.ndarray] | None = None
    for core, context in tiles:
        parts = run(_inputs(voxels.coords[context], voxels.feats[context], device))
        if outputs is None:
            outputs = [np.empty((len(voxels.coords), *p.shape[1:]), dtype=p.dtype) for p in parts]
        keep = np.searchsorted(context, core)  # core rows inside the context
        for out, part in zip(outputs, parts):
            out[core] = part[keep]
    return tuple(outputs)


def _inputs(coords: np.ndarray, feats: np.ndarray, device: torch.device) -> SparseTensor:
    batch = np.zeros((len(coords), 1), dtype=np.int32)
    return SparseTensor(torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).to(device),
                        torch.from_numpy(np.concatenate([batch, coords.astype(np.int32)], axis=1)).to(device))


@torch.no_grad()
def predict_scene(model: torch.nn.Module, scene: Scene, channels: list[str], voxel_size: float,
                  num_classes: int, device: torch.device, tiling: Tiling | None = None) -> ScenePrediction:
    """Voxelise ``scene`` without augmentation, run ``model`` in eval mode (tile by tile on a
    large scene), keep outputs on the CPU."""
    model.eval()
    voxels = scene_voxels(scene, channels, voxel_size)

    def run(inputs: SparseTensor) -> tuple[np.ndarray, np.ndarray]:
        logits, features = model(inputs)
        return logits.float().cpu().numpy(), features.float().cpu().numpy()

    logits, features = run_tiled(voxels, device, run, tiling)
    return ScenePrediction(torch.from_numpy(logits), torch.from_numpy(features), voxels.inverse)
