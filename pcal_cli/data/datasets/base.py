"""What a dataset importer returns: the dataset's description and a lazy list of its scenes.

An importer is a function ``open_<name>(raw: Path | None, **options) -> RawDataset``. It lists
the scenes without reading them; ``RawScene.load()`` reads one scene, with labels already mapped
to ``0..C-1`` and ``IGNORE`` (-1) for unknown, so ``prepare`` streams a dataset scene by scene.
Mistakes in the raw data raise :class:`pcal_cli.errors.PcalError` with one clear line; problems
that are tolerated (a skipped bad line) are appended to ``RawDataset.notes``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pcal_cli.data.scene import Scene

SPLITS = ("train", "val", "test")
CHANNELS = ("rgb", "intensity", "nir")  # input channels besides xyz, in the order features are built


@dataclass(frozen=True)
class DatasetSpec:
    """Dataset-wide facts written into ``pcal.yaml``."""

    name: str
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    indoor: bool = True
    channels: tuple[str, ...] = ("rgb",)  # input channels besides xyz: some of CHANNELS, in that order
    voxel_size: float | None = None  # None: the training profile's
    ignore: int = -1
    profile: str = "indoor"  # training profile (pcal_cli.training.profiles): synthetic, indoor, vehicle, aerial


@dataclass(frozen=True)
class RawScene:
    """One scene of a raw dataset, read on demand."""

    split: str
    name: str
    load: Callable[[], Scene]


@dataclass
class RawDataset:
    spec: DatasetSpec
    scenes: list[RawScene]
    notes: list[str] = field(default_factory=list)


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_scene_name(name: str) -> str:
    """A file-name-safe scene name (no separators, no leading dots)."""
    cleaned = _SAFE_NAME.sub("_", name).lstrip(".")
    return cleaned or "scene"
