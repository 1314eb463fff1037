"""``pcal prepare``: turn a raw dataset into a project directory, scene by scene.

The project is built in a hidden staging folder beside the target and renamed into place at the
end, so a failure at any point leaves no partial project. With ``--holdout-area`` each training
scene is cut into ``<name>_train`` and ``<name>_test`` before its regions are built.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pcal_cli import __version__
from pcal_cli.atomic import TMP_SUFFIX, fsync_dir, write_text
from pcal_cli.data.datasets.registry import all_datasets, get_dataset
from pcal_cli.data.datasets.base import CHANNELS, SPLITS, DatasetSpec, RawScene
from pcal_cli.data.holdout import Holdout, holdout_mask, parse_holdout
from pcal_cli.data.ply import write_ply
from pcal_cli.data.scene import IGNORE, Scene, drop_invalid_points
from pcal_cli.errors import PcalError
from pcal_cli.training.profiles import get_profile
from pcal_cli.geometry.grid import grid_subsample
from pcal_cli.geometry.regions import build_regions
from pcal_cli.project import CONFIG_NAME, LEDGER_NAME, Project, ProjectConfig, RegionSettings, dump_config
from pcal_cli.catalogue import REGION_KINDS

REGION_PARAMS = {
    "supervoxel": ("seed_resolution", "voxel_resolution", "min_size"),
    "cells": ("cell",),
    "kmeans": ("chunks",),
    "none": (),
}
INDOOR_REGIONS = {"seed_resolution": 1.0, "voxel_resolution": 0.1, "min_size": 100, "cell": 0.25, "chunks": 20}
OUTDOOR_REGIONS = {"seed_resolution": 10.0, "voxel_resolution": 0.5, "min_size": 100, "cell": 2.0, "chunks": 20}


@dataclass
class PrepareOptions:
    """Dataset-independent settings of ``prepare``; ``None`` means the dataset's default."""

    grid: float | None = None
    regions: str = "supervoxel"
    region_params: dict[str, Any] = field(default_factory=dict)
    voxel_size: float | None = None
    profile: str | None = None  # training profile (None: the dataset's)
    seed: int = 0
    force: bool = False
    holdout_area: str | None = None  # SPEC of pcal_cli.data.holdout: cut each training scene in two


@dataclass
class SplitSummary:
    scenes: int = 0
    points: int = 0
    labelled: int = 0
    regions: int = 0
    histogram: np.ndarray | None = None


@dataclass
class PrepareResult:
    project: Project
    config: ProjectConfig
    splits: dict[str, SplitSummary]
    notes: list[str]


ProgressCallback = Callable[[int, int, str], None]


def prepare_project(
    dataset: str,
    raw: Path | None,
    project_dir: Path,
    dataset_options: dict[str, Any] | None = None,
    options: PrepareOptions | None = None,
    on_scene: ProgressCallback | None = None,
) -> PrepareResult:
    """Import ``dataset`` from ``raw`` into a new project at ``project_dir``.

    ``on_scene(done, total, name)`` is called after each scene is written.
    """
    options = options or PrepareOptions()
    get_dataset(dataset)  # an unknown name is an error naming the choices
    datasets = all_datasets()
    holdout = None if options.holdout_area is None else parse_holdout(options.holdout_area)
    project_dir = Path(project_dir)
    replacing = _check_target(project_dir, options.force)
    raw_dataset = datasets[dataset](raw, **(dataset_options or {}))
    spec = raw_dataset.spec
    if not raw_dataset.scenes:
        raise PcalError(f"{raw}: no scenes found for dataset '{dataset}'")
    _check_unique_names(raw_dataset.scenes, holdout)
    region_params = resolve_region_params(options.regions, options.region_params, spec.indoor)
    if options.grid is not None and options.grid <= 0:
        raise PcalError("--grid must be a positive size in metres")
    profile = get_profile(options.profile or spec.profile)
    voxel_size = options.voxel_size
    if voxel_size is None:
        voxel_size = profile.voxel_size if options.profile or spec.voxel_size is None else spec.voxel_size
    if voxel_size <= 0:
        raise PcalError("--voxel-size must be a positive size in metres")

    staging = project_dir.parent / f".{project_dir.name}.prepare-{os.getpid()}{TMP_SUFFIX}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        notes = raw_dataset.notes  # loaders append to it while scenes are read
        splits: dict[str, SplitSummary] = {}
        names: dict[str, list[str]] = {}
        total = len(raw_dataset.scenes)
        for done, item in enumerate(raw_dataset.scenes, start=1):
            scene = _load_checked(item, spec, notes)
            parts = [] if scene is None else output_scenes(item.split, item.name, scene, holdout, notes)
            for split, name, part in parts:
                part = _prepare_scene(part, options, region_params)
                write_ply(staging / "scenes" / split / f"{name}.ply", part)
                _accumulate(splits.setdefault(split, SplitSummary()), part, len(spec.classes))
                names.setdefault(split, []).append(name)
            if on_scene is not None:
                on_scene(done, total, item.name)
        if not names:
            raise PcalError(f"{raw}: every scene was empty after dropping invalid points")
        notes.extend(split_notes(names))
        source = {"raw": None if raw is None else str(Path(raw).resolve()), "options": _plain(dataset_options or {})}
        if holdout is not None:
            source["holdout_area"] = holdout.text
        config = ProjectConfig(
            dataset=spec.name,
            classes=list(spec.classes),
            colors=[list(c) for c in spec.colors],
            splits={s: names[s] for s in SPLITS if s in names},
            ignore=spec.ignore,
            indoor=spec.indoor,
            channels=list(spec.channels),
            voxel_size=float(voxel_size),
            grid=options.grid,
            regions=RegionSettings(kind=options.regions, params=region_params),
            source=source,
            pcal_version=__version__,
            training=profile.to_config(),
        )
        write_text(staging / CONFIG_NAME, dump_config(config))
        write_text(staging / LEDGER_NAME, "")
        (staging / "rounds").mkdir()
        _move_into_place(staging, project_dir, replacing)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    project = Project(project_dir)
    return PrepareResult(project=project, config=config, splits=splits, notes=notes)


def resolve_region_params(kind: str, given: dict[str, Any], indoor: bool) -> dict[str, Any]:
    """The region parameters to use: the indoor/outdoor defaults overridden by ``given``."""
    if kind not in REGION_KINDS:
        raise PcalError(f"unknown region kind '{kind}' (choose from {', '.join(REGION_KINDS)})")
    allowed = REGION_PARAMS[kind]
    extra = sorted(k for k, v in given.items() if v is not None and k not in allowed)
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in extra)
        raise PcalError(f"{flags} does not apply to --regions {kind}")
    defaults = INDOOR_REGIONS if indoor else OUTDOOR_REGIONS
    params = {k: defaults[k] for k in allowed}
    params.update({k: v for k, v in given.items() if v is not None})
    for key, value in params.items():
        if not value > 0:
            raise PcalError(f"--{key.replace('_', '-')} must be positive")
    return params


def _check_target(project_dir: Path, force: bool) -> bool:
    """Refuse targets that would lose data; return True when an existing project is replaced."""
    if project_dir.exists() and not project_dir.is_dir():
        raise PcalError(f"{project_dir}: exists and is not a directory")
    if not project_dir.exists() or not any(project_dir.iterdir()):
        return False
    if not (project_dir / CONFIG_NAME).is_file():
        raise PcalError(f"{project_dir}: folder exists, is not empty and is not a pcal project; choose another")
    if not force:
        raise PcalError(f"{project_dir}: already a pcal project; pass --force to replace its scenes")
    project = Project(project_dir)
    ledger = project.ledger_path
    if project.rounds() or (ledger.is_file() and ledger.stat().st_size > 0):
        raise PcalError(
            f"{project_dir}: has labelling rounds; --force never deletes labels (move rounds/ and "
            f"{LEDGER_NAME} away first, or prepare into a new folder)"
        )
    return True


def _move_into_place(staging: Path, project_dir: Path, replacing: bool) -> None:
    if project_dir.is_dir() and not replacing:
        project_dir.rmdir()  # empty, checked before
    if replacing:
        project = Project(project_dir)
        with project.lock("prepare --force"):
            old = project_dir.parent / f".{project_dir.name}.old-{os.getpid()}{TMP_SUFFIX}"
            os.replace(project_dir, old)
        try:
            os.replace(staging, project_dir)
        except OSError:
            os.replace(old, project_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        try:
            os.replace(staging, project_dir)
        except OSError as exc:
            raise PcalError(f"{project_dir}: could not create the project ({exc.strerror})") from None
    fsync_dir(project_dir.parent)


def _check_unique_names(scenes: list[RawScene], holdout: Holdout | None = None) -> None:
    seen: set[str] = set()
    for item in scenes:
        if item.split not in SPLITS:
            raise PcalError(f"scene {item.name}: unknown split '{item.split}'")
        if item.name in seen:
            raise PcalError(f"scene name '{item.name}' appears twice; scene names must be unique across splits")
        seen.add(item.name)
    if holdout is None:
        return
    cut = [n for item in scenes if item.split == "train" for n in (f"{item.name}_train", f"{item.name}_test")]
    kept = {item.name for item in scenes if item.split != "train"}
    clash = sorted(kept & set(cut))
    if clash:
        raise PcalError(f"scene name '{clash[0]}' appears twice: --holdout-area names the parts of each "
                        "training scene <name>_train and <name>_test")


def output_scenes(split: str, name: str, scene: Scene, holdout: Holdout | None,
                  notes: list[str]) -> list[tuple[str, str, Scene]]:
    """The ``(split, name, scene)`` to write for one loaded scene: itself, or with a hold-out a
    training scene's non-empty ``<name>_train`` and ``<name>_test`` parts (an empty one is noted)."""
    if holdout is None or split != "train":
        return [(split, name, scene)]
    test = holdout_mask(scene.xyz, scene.offset, holdout)
    parts = [(side, f"{name}_{side}", mask) for side, mask in (("train", ~test), ("test", test)) if mask.any()]
    if len(parts) == 1:
        notes.append(f"{name}: every point is on the {parts[0][0]} side of --holdout-area {holdout.text}; "
                     f"only {parts[0][1]} is written")
    return [(side, part_name, _renamed(scene.subset(mask), part_name)) for side, part_name, mask in parts]


def _renamed(scene: Scene, name: str) -> Scene:
    scene.name = name
    return scene


def split_notes(names: dict[str, list[str]]) -> list[str]:
    """What every importer says about the splits it ended with: no training scene, or nothing
    but training scenes (no val or test split to evaluate on)."""
    if "train" not in names:
        return ["no training scenes: this project can be evaluated but not trained"]
    if "val" not in names and "test" not in names:
        return [("every scene is in train (the val and test splits are empty): rounds train but are never "
                 "evaluated; hold scenes out with --split-file, or part of each scene with --holdout-area")]
    return []


def _load_checked(item: RawScene, spec: DatasetSpec, notes: list[str]) -> Scene | None:
    scene = item.load()
    finite = drop_invalid_points(scene.xyz)
    dropped = int((~finite).sum())
    if dropped:
        notes.append(f"{item.name}: dropped {dropped} point(s) with NaN or infinite coordinates")
        scene = scene.subset(finite)
    if len(scene) == 0:
        notes.append(f"{item.name}: no valid points, skipped")
        return None
    bad = (scene.label != IGNORE) & ((scene.label < 0) | (scene.label >= len(spec.classes)))
    if bad.any():
        ids = np.unique(scene.label[bad])[:8].tolist()
        raise PcalError(f"scene {item.name}: label ids outside the class list 0..{len(spec.classes) - 1}: {ids}")
    for channel in CHANNELS:
        if channel in spec.channels and getattr(scene, channel) is None:
            raise PcalError(f"scene {item.name}: has no {channel} but the dataset's input channels include it")
    if "nir" not in spec.channels:
        scene.nir = None  # stored only as an input channel: scene PLYs of other projects stay as they were
    return scene


def _prepare_scene(scene: Scene, options: PrepareOptions, region_params: dict[str, Any]) -> Scene:
    if options.grid is not None:
        scene = scene.subset(grid_subsample(scene.xyz, options.grid))
    scene.region = build_regions(options.regions, scene.xyz, scene.rgb, seed=options.seed, **region_params)
    return scene


def _accumulate(summary: SplitSummary, scene: Scene, num_classes: int) -> None:
    known = scene.label[scene.label != IGNORE].astype(np.int64)
    hist = np.bincount(known, minlength=num_classes)
    summary.histogram = hist if summary.histogram is None else summary.histogram + hist
    summary.scenes += 1
    summary.points += len(scene)
    summary.labelled += len(known)
    summary.regions += len(np.unique(scene.region[scene.region >= 0]))


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items() if v is not None}
