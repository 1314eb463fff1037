"""SemanticKITTI, 19-class single-scan benchmark.

Layout: ``sequences/NN/velodyne/XXXXXX.bin`` (float32 (N, 4) x y z intensity) and
``sequences/NN/labels/XXXXXX.label`` (uint32; low 16 bits semantic id, high 16 bits instance id).
Semantic ids map through ``SEMANTICKITTI_LEARNING_MAP`` (moving classes to their static class,
0/1/52/99 and unknown ids to ignore). Splits: 00-07, 09, 10 train; 08 val; 11-21 test (no labels),
or a split file's.
"""

from __future__ import annotations

import operator
import os
import re
from pathlib import Path

from pcal_cli.data.classes import SEMANTICKITTI_CLASSES, SEMANTICKITTI_COLORS, SEMANTICKITTI_LEARNING_MAP
from pcal_cli.data.datasets.base import DatasetSpec, RawDataset, RawScene
from pcal_cli.data.datasets.splits import assign_split_file
from pcal_cli.data.readers import existing_folder, read_kitti_bin, scene_files
from pcal_cli.errors import PcalError

SPEC = DatasetSpec(name="semantickitti", classes=SEMANTICKITTI_CLASSES, colors=SEMANTICKITTI_COLORS,
                   indoor=False, channels=("intensity",), profile="vehicle")
TRAIN_SEQUENCES = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10)
VAL_SEQUENCES = (8,)
TEST_SEQUENCES = tuple(range(11, 22))
_SEQUENCE = re.compile(r"^\d{2}$")


def sequence_split(number: int) -> str | None:
    """The official split of sequence ``number`` (None for numbers outside 00-21)."""
    if number in TRAIN_SEQUENCES:
        return "train"
    if number in VAL_SEQUENCES:
        return "val"
    if number in TEST_SEQUENCES:
        return "test"
    return None


def open_semantickitti(raw: str | os.PathLike, frame_step: int = 1,
                       split_file: str | os.PathLike | None = None) -> RawDataset:
    """List the scans under ``raw`` (the folder holding ``sequences/``, its ``dataset/`` parent,
    or the ``sequences`` folder itself), keeping every ``frame_step``-th scan of each sequence
    (positions 0, k, 2k, ... in sorted order). Scene names are ``<sequence>_<frame>``.
    Test sequences (11-21) are listed with every label ignored, even where label files exist.
    ``split_file`` (see :func:`pcal_cli.data.datasets.splits.read_split_file`) re-splits the
    kept scans by name; labels still follow the sequence (none for 11-21).
    """
    root = existing_folder(raw, "SemanticKITTI folder")
    try:
        step = operator.index(frame_step)
    except TypeError:
        step = 0
    if isinstance(frame_step, bool) or step < 1:
        raise PcalError(f"frame_step must be a positive integer, not {frame_step!r}")
    for candidate in (root / "sequences", root / "dataset" / "sequences"):
        if candidate.is_dir():
            root = candidate
            break
    sequences = sorted(p for p in root.iterdir() if p.is_dir() and _SEQUENCE.match(p.name))
    if not sequences:
        raise PcalError(f"{root}: no sequences found (expected sequences/00/velodyne/000000.bin)")

    notes: list[str] = []
    scenes: list[RawScene] = []
    for sequence in sequences:
        split = sequence_split(int(sequence.name))
        if split is None:
            notes.append(f"sequence {sequence.name} is not part of the benchmark (00-21) and was skipped")
            continue
        scans = scene_files(sequence / "velodyne", ".bin")
        if not scans:
            raise PcalError(f"{sequence / 'velodyne'}: no .bin scans found")
        labels = sequence / "labels"
        if split != "test":
            have = {p.stem for p in scene_files(labels, ".label")} if labels.is_dir() else set()
            missing = [p.name for p in scans if p.stem not in have]
            if missing:
                raise PcalError(f"{labels}: no label file for {len(missing)} scan(s), e.g. {missing[0]} "
                                "(download the SemanticKITTI label archive)")
        for scan in scans[::step]:
            label = labels / f"{scan.stem}.label" if split != "test" else None
            name = f"{sequence.name}_{scan.stem}"
            scenes.append(RawScene(split, name, _loader(scan, label, name)))
    if not scenes:
        raise PcalError(f"{root}: no benchmark sequences (00-21) found")
    if split_file is not None:
        scenes = assign_split_file(scenes, split_file, notes)
    return RawDataset(spec=SPEC, scenes=scenes, notes=notes)


def _loader(scan: Path, label: Path | None, name: str):
    return lambda: read_kitti_bin(scan, label, SEMANTICKITTI_LEARNING_MAP, name=name)
