"""What the steps share: the training pool, its point counts, and the oracle's ground truth."""

from __future__ import annotations

import numpy as np
from pcal_cli.data.ply import read_ply
from pcal_cli.data.scene import Scene
from pcal_cli.errors import PcalError
from pcal_cli.project import Project
from pcal_cli.rounds import UNKNOWN, VOID


def training_points(project: Project) -> int:
    """Total points of the training split: the base of percentage budgets."""
    total = project.point_count("train")
    if total == 0:
        raise PcalError(f"{project.root}: the project has no training points")
    return total


def pool_scene(project: Project, name: str) -> Scene:
    """A training scene WITHOUT its ground truth: what scoring and selection may see."""
    scene = read_ply(project.scene_path("train", name))
    scene.label = np.full(len(scene), -1, dtype=np.int16)
    return scene


def reveal(project: Project, name: str, mask: np.ndarray) -> np.ndarray:
    """The oracle: ground truth of the points in ``mask`` (``VOID`` where the truth is unknown,
    ``UNKNOWN`` outside the mask). Only labelling calls it."""
    truth = read_ply(project.scene_path("train", name)).label
    if len(truth) != len(mask):
        raise PcalError(f"scene {name}: {len(mask)} query flags for {len(truth)} points")
    return np.where(mask, np.where(truth >= 0, truth, VOID), UNKNOWN).astype(np.int16)
