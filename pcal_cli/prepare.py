"""``pcal prepare``: turn a raw dataset into a project directory, scene by scene.

The project is built in a hidden staging folder beside the target and renamed into place at the
end, so a failure at any point leaves no partial project.
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
from pcal_cli.data.datasets.registry import DATASETS
from pcal_cli.data.datasets.base import SPLITS, DatasetSpec, RawScene
from pcal_cli.data.ply import write_ply
from pcal_cli.data.scene import IGNORE, Scene, drop_invalid_points
from pcal_cli.errors import PcalError
from pcal_cli.training.profiles import get_profile
from pcal_cli.geometry.grid import grid_subsample
from pcal_cli.geometry.regions import build_regions
from pcal_cli.project import CONFIG_NAME, LEDGER_NAME, Project, ProjectConfig, RegionSettings, dump_config

REGION_KINDS = ("supervoxel", "cells", "kmeans", "none")
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
    if dataset not in DATASETS:
        raise PcalError(f"unknown dataset '{dataset}' (choose from {', '.join(DATASETS)})")
    project_dir = Path(project_dir)
    replacing = _check_target(project_dir, options.force)
    raw_dataset = DATASETS[dataset](raw, **(dataset_options or {}))
    spec = raw_dataset.spec
    if not raw_dataset.scenes:
        raise PcalError(f"{raw}: no scenes found for dataset '{dataset}'")
    _check_unique_names(raw_dataset.scenes)
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
            if scene is not None:
                scene = _prepare_scene(scene, options, region_params)
                write_ply(staging / "scenes" / item.split / f"{item.name}.ply", scene)
                _accumulate(splits.setdefault(item.split, SplitSummary()), scene, len(spec.classes))
                names.setdefault(item.split, []).append(item.name)
            if on_scene is not None:
                on_scene(done, total, item.name)
        if not names:
            raise PcalError(f"{raw}: every scene was empty after dropping invalid points")
        if "train" not in names:
            notes.append("no training scenes: this project can be evaluated but not trained")
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
            source={"raw": None if raw is None else str(Path(raw).resolve()), "options": _plain(dataset_options or {})},
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


def _check_unique_names(scenes: list[RawScene]) -> None:
    seen: set[str] = set()
    for item in scenes:
        if item.split not in SPLITS:
            raise PcalError(f"scene {item.name}: unknown split '{item.split}'")
        if item.name in seen:
            raise PcalError(f"scene name '{item.name}' appears twice; scene names must be unique across splits")
        seen.add(item.name)


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
    for channel, values in (("rgb", scene.rgb), ("intensity", scene.intensity)):
        if channel in spec.channels and values is None:
            raise PcalError(f"scene {item.name}: has no {channel} but the dataset's input channels include it")
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
