"""S3DIS (Stanford 3D Indoor Spaces, ``Stanford3dDataset_v1.2_Aligned_Version``).

Official layout: ``Area_N/<room>/Annotations/<class>_<k>.txt``, one point per line ``x y z r g b``.
A room is the union of its annotation files; the file name gives the class of its points, and any
name outside the 13 benchmark classes (``stairs``) is clutter. The mmdetection3d layout
(``points/<Area_N_room>.bin`` float32 x y z r g b + ``semantic_mask/<Area_N_room>.bin`` int64 ids
0..12) is read too. Split: every area but ``test_area`` is train, ``Area_<test_area>`` is test,
unless a split file decides.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from pcal_cli.data.classes import S3DIS_CLASSES, S3DIS_COLORS
from pcal_cli.data.datasets.base import DatasetSpec, RawDataset, RawScene, safe_scene_name
from pcal_cli.data.datasets.splits import assign_split_file
from pcal_cli.data.readers import existing_folder, parse_number_rows, read_points_bin, scene_files
from pcal_cli.data.scene import Scene
from pcal_cli.errors import PcalError

SPEC = DatasetSpec(name="s3dis", classes=S3DIS_CLASSES, colors=S3DIS_COLORS, indoor=True,
                   channels=("rgb",), profile="indoor")
ALIGNED_FOLDER = "Stanford3dDataset_v1.2_Aligned_Version"
CLUTTER = S3DIS_CLASSES.index("clutter")
_AREA = re.compile(r"^Area_(\d+)$")
_AREA_PREFIX = re.compile(r"^Area_(\d+)_")


def open_s3dis(raw: str | os.PathLike, test_area: int = 5,
               split_file: str | os.PathLike | None = None) -> RawDataset:
    """List the rooms of S3DIS under ``raw`` (the folder holding ``Area_1`` .. ``Area_6``, or its
    parent holding ``Stanford3dDataset_v1.2_Aligned_Version``, or an mmdetection3d data folder
    with ``points/`` and ``semantic_mask/``). Rooms of ``Area_<test_area>`` form the test split,
    all others the train split; ``split_file`` (see
    :func:`pcal_cli.data.datasets.splits.read_split_file`) overrides that, and then the test area
    need not exist. Scene names are ``Area_1_office_2``.
    """
    root = existing_folder(raw, "S3DIS folder")
    try:
        test_area = int(test_area)
    except (TypeError, ValueError):
        raise PcalError(f"test_area must be an area number such as 5, not {test_area!r}") from None
    if (root / "points").is_dir() and (root / "semantic_mask").is_dir():
        return _with_split_file(_open_mmdet3d(root, test_area, split_file is None), split_file)
    if not any(_AREA.match(p.name) for p in root.iterdir() if p.is_dir()) and (root / ALIGNED_FOLDER).is_dir():
        root = root / ALIGNED_FOLDER
    areas = sorted((int(m.group(1)), p) for p in root.iterdir()
                   if p.is_dir() and (m := _AREA.match(p.name)))
    if not areas:
        raise PcalError(f"{root}: no Area_N folders found (expected {ALIGNED_FOLDER}/Area_1/<room>/Annotations)")
    if split_file is None and test_area not in {n for n, _ in areas}:
        found = ", ".join(p.name for _, p in areas)
        raise PcalError(f"{root}: test area Area_{test_area} not found (found {found})")

    notes: list[str] = []
    scenes: list[RawScene] = []
    for number, area in areas:
        rooms = sorted(p for p in area.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not rooms:
            raise PcalError(f"{area}: area folder holds no rooms")
        split = "test" if number == test_area else "train"
        for room in rooms:
            files = scene_files(room / "Annotations", ".txt")
            if not files:
                raise PcalError(f"{room}: room has no Annotations/<class>_<k>.txt files")
            name = safe_scene_name(f"{area.name}_{room.name}")
            scenes.append(RawScene(split, name, _room_loader(name, files, notes)))
    return _with_split_file(RawDataset(spec=SPEC, scenes=scenes, notes=notes), split_file)


def _with_split_file(data: RawDataset, split_file: str | os.PathLike | None) -> RawDataset:
    if split_file is not None:
        data.scenes = assign_split_file(data.scenes, split_file, data.notes)
    return data


def object_class(path: Path) -> int:
    """The class id of an annotation file ``<class>_<k>.txt``; unknown names are clutter."""
    name = path.stem.rsplit("_", 1)[0] if "_" in path.stem else path.stem
    name = name.lower()
    return S3DIS_CLASSES.index(name) if name in S3DIS_CLASSES else CLUTTER


def read_room(name: str, files: list[Path], notes: list[str] | None = None) -> Scene:
    """One room from its annotation files; lines that are not six numbers are skipped and
    reported in ``notes`` (one line per file with a count)."""
    blocks, labels = [], []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PcalError(f"{path}: cannot read ({exc.strerror or exc})") from None
        rows, skipped = parse_number_rows(data, columns=6)
        if skipped and notes is not None:
            notes.append(f"{name}: skipped {skipped} malformed line(s) in {path.parent.name}/{path.name}")
        blocks.append(rows)
        labels.append(np.full(len(rows), object_class(path), dtype=np.int16))
    rows = np.concatenate(blocks) if blocks else np.zeros((0, 6))
    rgb = np.clip(np.rint(np.nan_to_num(rows[:, 3:6])), 0, 255).astype(np.uint8)
    return Scene(name=name, xyz=rows[:, :3], label=np.concatenate(labels), rgb=rgb)


def _room_loader(name: str, files: list[Path], notes: list[str]):
    return lambda: read_room(name, files, notes)


def _open_mmdet3d(root: Path, test_area: int, note_missing_area: bool = True) -> RawDataset:
    """mmdetection3d's processed S3DIS: ``points/*.bin`` + ``semantic_mask/*.bin`` (int64 0..12)."""
    files = scene_files(root / "points", ".bin")
    if not files:
        raise PcalError(f"{root / 'points'}: no .bin scans found")
    scenes = []
    for path in files:
        match = _AREA_PREFIX.match(path.stem)
        if match is None:
            raise PcalError(f"{path}: scan name does not start with Area_N_")
        split = "test" if int(match.group(1)) == test_area else "train"
        scenes.append(RawScene(split, safe_scene_name(path.stem),
                               _bin_loader(path, root / "semantic_mask" / path.name)))
    notes = []
    if note_missing_area and not any(s.split == "test" for s in scenes):
        notes.append(f"no scans of Area_{test_area} (the test area) were found")
    return RawDataset(spec=SPEC, scenes=scenes, notes=notes)


def _bin_loader(path: Path, mask: Path):
    def load() -> Scene:
        scene = read_points_bin(path, mask, label_dtype="<i8", rgb_scale=1.0, name=safe_scene_name(path.stem))
        valid = (scene.label >= 0) & (scene.label < len(S3DIS_CLASSES))
        scene.label = np.where(valid, scene.label, -1).astype(np.int16)
        return scene
    return load
