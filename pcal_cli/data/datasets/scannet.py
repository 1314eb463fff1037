"""ScanNet v2, 20-class benchmark.

Two layouts are read, from the same folder if both are present:

* official: ``scans/<scene>/<scene>_vh_clean_2.ply`` (x y z + colours) and
  ``<scene>_vh_clean_2.labels.ply`` (vertex field ``label`` = NYU40 id); ``scans_test/<scene>/``
  scenes have no labels and form the test split;
* preprocessed: ``<scene>_vert_all.npy`` (float32 (N, 6) x y z r g b, colours 0..255) and
  ``<scene>_sem_label_all.npy`` (NYU40 ids, 0 = unannotated).

NYU40 ids map to the 20 classes through ``SCANNET_NYU40_IDS``; every other id is ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from pcal_cli.data.classes import SCANNET_CLASSES, SCANNET_COLORS, SCANNET_NYU40_IDS, map_labels
from pcal_cli.data.datasets.base import DatasetSpec, RawDataset, RawScene
from pcal_cli.data.datasets.splits import apply_assignment, read_name_list, read_split_file
from pcal_cli.data.ply import read_ply
from pcal_cli.data.readers import existing_folder, read_npy, scene_files
from pcal_cli.data.scene import IGNORE, Scene
from pcal_cli.errors import PcalError

SPEC = DatasetSpec(name="scannet", classes=SCANNET_CLASSES, colors=SCANNET_COLORS, indoor=True,
                   channels=("rgb",), profile="indoor")
NYU40_TO_CLASS = {nyu: i for i, nyu in enumerate(SCANNET_NYU40_IDS)}
OFFICIAL_LISTS = {"train": "scannetv2_train.txt", "val": "scannetv2_val.txt", "test": "scannetv2_test.txt"}
LIST_FOLDERS = (".", "meta_data", "Tasks/Benchmark")
VAL_MODULO = 5  # default rule: sceneXXXX_YY goes to val when XXXX % 5 == 4
_SCENE_ID = re.compile(r"^scene(\d+)_\d+$")


def open_scannet(raw: str | os.PathLike, split_file: str | os.PathLike | None = None) -> RawDataset:
    """List the ScanNet scans under ``raw`` (the folder holding ``scans/``, a ``scans`` folder
    itself, or a folder of ``*_vert_all.npy`` files).

    Splits, in order of precedence: ``split_file`` (see
    :func:`pcal_cli.data.datasets.splits.read_split_file`); the official
    ``scannetv2_{train,val,test}.txt`` lists when found in ``raw`` (or its ``meta_data/`` or
    ``Tasks/Benchmark/``); otherwise the rule: ``scans_test`` scenes are test, ``sceneXXXX_YY``
    with ``XXXX % 5 == 4`` is val, every other scene train (all scans of a room share a split).
    With a split file or official lists, scenes they do not name are skipped (counted in notes).
    """
    root = existing_folder(raw, "ScanNet folder")
    notes: list[str] = []
    entries: list[tuple[str, str, object]] = []  # (default split, name, loader)
    scans = root / "scans" if (root / "scans").is_dir() else root
    entries += _official_scans(scans, labelled=True, notes=notes)
    if (root / "scans_test").is_dir():
        entries += _official_scans(root / "scans_test", labelled=False, notes=notes)
    entries += _npy_scans(root, notes)
    if not entries:
        raise PcalError(f"{root}: no ScanNet scans found (expected scans/<scene>/<scene>_vh_clean_2.ply "
                        "or <scene>_vert_all.npy files)")
    names = [name for _, name, _ in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PcalError(f"{root}: scene(s) found in both layouts: {', '.join(duplicates[:5])}")
    entries.sort(key=lambda e: e[1])

    if split_file is not None:
        entries = apply_assignment(entries, read_split_file(split_file), notes, split_file)
        if not entries:
            raise PcalError(f"{split_file}: names none of the ScanNet scenes found")
    else:
        official = _official_assignment(root)
        if official:
            unlisted_test = [e for e in entries if e[0] == "test" and e[1] not in official]
            listed = [e for e in entries if not (e[0] == "test" and e[1] not in official)]
            entries = apply_assignment(listed, official, notes, "the official scannetv2_*.txt lists") + unlisted_test
            if not entries:
                raise PcalError(f"{root}: the official scannetv2_*.txt lists name none of the scenes found")
            entries.sort(key=lambda e: e[1])
        else:
            entries = [(default_split(name) if split != "test" else "test", name, load)
                       for split, name, load in entries]
    return RawDataset(spec=SPEC, scenes=[RawScene(s, n, load) for s, n, load in entries], notes=notes)


def default_split(name: str) -> str:
    """The default rule: ``sceneXXXX_YY`` -> val when ``XXXX % 5 == 4``, else train."""
    match = _SCENE_ID.match(name)
    return "val" if match and int(match.group(1)) % VAL_MODULO == VAL_MODULO - 1 else "train"


def read_official_scan(mesh: Path, labels: Path | None, name: str) -> Scene:
    """A scan from ``_vh_clean_2.ply`` (+ ``.labels.ply``), labels mapped to the 20 classes."""
    scene = read_ply(mesh, name=name)
    scene.label = np.full(len(scene), IGNORE, dtype=np.int16)
    if labels is not None:
        raw = read_ply(labels, label_field="label", name=name).label
        if len(raw) != len(scene):
            raise PcalError(f"{labels}: {len(raw)} vertices, but {mesh.name} has {len(scene)}")
        scene.label = map_labels(raw, NYU40_TO_CLASS)
    return scene


def read_npy_scan(vertices: Path, labels: Path | None, name: str) -> Scene:
    """A preprocessed scan (``_vert_all.npy`` + ``_sem_label_all.npy``), labels mapped."""
    scene = read_npy(vertices, labels, name=name, rgb_scale=1.0)
    if scene.rgb is None:
        raise PcalError(f"{vertices}: expected (N, 6) x y z r g b, found {len(scene)} points without colours")
    scene.label = map_labels(scene.label, NYU40_TO_CLASS)  # unlabelled (-1) stays ignored
    return scene


def _official_scans(folder: Path, labelled: bool, notes: list[str]) -> list[tuple[str, str, object]]:
    entries, missing_mesh, missing_labels = [], 0, 0
    for scan in sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("scene")):
        mesh = scan / f"{scan.name}_vh_clean_2.ply"
        if not mesh.is_file():
            missing_mesh += 1
            continue
        labels = scan / f"{scan.name}_vh_clean_2.labels.ply"
        if labelled and not labels.is_file():
            missing_labels += 1
        labels_path = labels if labelled and labels.is_file() else None
        entries.append(("train" if labelled else "test", scan.name, _loader(read_official_scan, mesh, labels_path, scan.name)))
    if missing_mesh:
        notes.append(f"{folder}: {missing_mesh} scan folder(s) without _vh_clean_2.ply skipped")
    if missing_labels:
        notes.append(f"{folder}: {missing_labels} scan(s) without _vh_clean_2.labels.ply have no labels")
    return entries


def _npy_scans(folder: Path, notes: list[str]) -> list[tuple[str, str, object]]:
    entries, missing_labels = [], 0
    for vertices in scene_files(folder, "_vert_all.npy"):
        name = vertices.name[: -len("_vert_all.npy")]
        labels = vertices.with_name(f"{name}_sem_label_all.npy")
        if not labels.is_file():
            missing_labels += 1
        entries.append(("train", name, _loader(read_npy_scan, vertices, labels if labels.is_file() else None, name)))
    if missing_labels:
        notes.append(f"{folder}: {missing_labels} scan(s) without _sem_label_all.npy have no labels")
    return entries


def _official_assignment(root: Path) -> dict[str, str]:
    assignment: dict[str, str] = {}
    for sub in LIST_FOLDERS:
        for split, file_name in OFFICIAL_LISTS.items():
            path = root / sub / file_name
            if path.is_file():
                for name in read_name_list(path):
                    assignment.setdefault(name, split)
        if assignment:
            break
    return assignment


def _loader(read, path: Path, labels: Path | None, name: str):
    return lambda: read(path, labels, name)
