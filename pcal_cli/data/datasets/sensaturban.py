"""SensatUrban (urban photogrammetry, Birmingham and Cambridge), 13 classes.

Layouts: the official release, ``*.ply`` blocks (x y z red green blue + ``class``) directly in
the folder or in ``train/`` and ``test/`` (test blocks have no labels); or mmdetection3d-style
``points/<block>.bin`` (float32 (N, 6) x y z r g b, colours 0..1) with ``labels/<block>.label``
(uint8 ids 0..12). Split by block (chunk suffixes such as ``_0002`` are ignored): the
RandLA-Net/official validation blocks are val, the official test blocks test, all others train.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from pcal_cli.data.datasets.base import DatasetSpec, RawDataset, RawScene, safe_scene_name
from pcal_cli.data.datasets.splits import assign_split_file
from pcal_cli.data.ply import read_ply
from pcal_cli.data.readers import existing_folder, read_points_bin, scene_files
from pcal_cli.data.scene import IGNORE, Scene
from pcal_cli.errors import PcalError

SENSATURBAN_CLASSES = (
    "ground", "high vegetation", "building", "wall", "bridge", "parking", "rail", "traffic road",
    "street furniture", "car", "footpath", "bike", "water",
)
SENSATURBAN_COLORS = (
    (85, 107, 47), (0, 255, 0), (255, 165, 0), (41, 49, 101), (0, 0, 0), (0, 0, 255), (255, 0, 255),
    (200, 200, 200), (89, 47, 95), (255, 0, 0), (255, 255, 0), (0, 255, 255), (0, 191, 255),
)
VAL_BLOCKS = ("birmingham_block_1", "birmingham_block_5", "cambridge_block_10", "cambridge_block_7")
TEST_BLOCKS = ("birmingham_block_2", "birmingham_block_8", "cambridge_block_15", "cambridge_block_16",
               "cambridge_block_22", "cambridge_block_27")
SPEC = DatasetSpec(name="sensaturban", classes=SENSATURBAN_CLASSES, colors=SENSATURBAN_COLORS,
                   indoor=False, channels=("rgb",), voxel_size=0.1,
                   profile="aerial")  # dense photogrammetry: finer than the aerial LiDAR default
_BLOCK = re.compile(r"^((?:birmingham|cambridge)_block_\d+)")


def block_split(name: str) -> str:
    """val / test for the official validation and test blocks, else train."""
    match = _BLOCK.match(name)
    block = match.group(1) if match else name
    return "val" if block in VAL_BLOCKS else "test" if block in TEST_BLOCKS else "train"


def open_sensaturban(raw: str | os.PathLike, split_file: str | os.PathLike | None = None) -> RawDataset:
    """List the SensatUrban blocks (or block chunks) under ``raw``, split by block, or by
    ``split_file`` (see :func:`pcal_cli.data.datasets.splits.read_split_file`) when given."""
    root = existing_folder(raw, "SensatUrban folder")
    entries: list[tuple[str, object]] = []
    if (root / "points").is_dir():
        for path in scene_files(root / "points", ".bin"):
            label = root / "labels" / f"{path.stem}.label"
            entries.append((path.stem, _bin_loader(path, label if label.is_file() else None)))
    for folder in (root, root / "train", root / "test"):
        if folder.is_dir():
            entries += [(p.stem, _ply_loader(p)) for p in scene_files(folder, ".ply")]
    if not entries:
        raise PcalError(f"{root}: no SensatUrban blocks found (expected points/*.bin + labels/*.label or *.ply)")
    names = [safe_scene_name(n) for n, _ in entries]
    if len(set(names)) != len(names):
        raise PcalError(f"{root}: the same block name appears more than once")
    scenes = sorted((RawScene(block_split(n), n, load) for n, (_, load) in zip(names, entries)),
                    key=lambda s: s.name)
    notes: list[str] = []
    if split_file is not None:
        scenes = assign_split_file(scenes, split_file, notes)
    return RawDataset(spec=SPEC, scenes=scenes, notes=notes)


def _keep_classes(scene: Scene) -> Scene:
    valid = (scene.label >= 0) & (scene.label < len(SENSATURBAN_CLASSES))
    scene.label = np.where(valid, scene.label, IGNORE).astype(np.int16)
    return scene


def _bin_loader(path: Path, label: Path | None):
    return lambda: _keep_classes(read_points_bin(path, label, label_dtype="u1", rgb_scale=255.0,
                                                 name=safe_scene_name(path.stem)))


def _ply_loader(path: Path):
    return lambda: _keep_classes(read_ply(path, name=safe_scene_name(path.stem)))
