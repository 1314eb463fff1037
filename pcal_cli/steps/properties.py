"""Cached per-point geometry of the training scenes (colour discontinuity, surface variation).

Computed on first use and kept in ``cache/properties/<scene>.k<k>.npz`` (written atomically),
stamped with the scene file's size and modification time, so a re-prepared scene is recomputed
and a deleted cache is rebuilt. The cache holds nothing a user could lose: it is always safe to
delete.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from pcal_cli.atomic import atomic_open
from pcal_cli.data.scene import Scene
from pcal_cli.geometry.point_properties import DEFAULT_K, point_properties
from pcal_cli.project import Project
from pcal_cli.layout import CACHE_DIR



def properties_path(project: Project, name: str, k: int) -> Path:
    return project.root / CACHE_DIR / "properties" / f"{name}.k{k}.npz"


def scene_properties(project: Project, scene: Scene, k: int = DEFAULT_K) -> tuple[np.ndarray, np.ndarray]:
    """``(colour_discontinuity, surface_variation)`` of training scene ``scene``, cached."""
    source = project.scene_path("train", scene.name).stat()
    stamp = np.array([source.st_size, source.st_mtime_ns, len(scene)], dtype=np.int64)
    path = properties_path(project, scene.name, k)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                if np.array_equal(data["stamp"], stamp):
                    return data["colour"], data["variation"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # a damaged cache is rebuilt below
    colour, variation = point_properties(scene.xyz, scene.rgb, k=k)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:
        np.savez(handle, stamp=stamp, colour=colour, variation=variation)
    return colour, variation
