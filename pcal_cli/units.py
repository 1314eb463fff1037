"""Labelling units: which points are labelled together.

``scene`` (the whole scan), ``region`` (the PLY's ``region`` field, built by prepare), ``cell``
(a fixed grid of cubes, default 0.25 m) and ``point``. A unit id is only meaningful within its
scene; -1 marks points that belong to no unit (and so cannot be selected as that unit).
"""

from __future__ import annotations

import numpy as np

from pcal_cli.data.scene import Scene
from pcal_cli.errors import PcalError, did_you_mean
from pcal_cli.geometry.regions import grid_cells
from pcal_cli.rounds import UNKNOWN
from pcal_cli.catalogue import DEFAULT_CELL, UNITS



def check_unit(unit: str) -> str:
    if unit not in UNITS:
        raise PcalError(f"unknown unit '{unit}' (choose from {', '.join(UNITS)}){did_you_mean(unit, UNITS)}")
    return unit


def unit_ids(scene: Scene, unit: str, cell: float = DEFAULT_CELL) -> np.ndarray:
    """The unit id (int64) of every point of ``scene``; deterministic in the scene's coordinates."""
    check_unit(unit)
    n = len(scene)
    if unit == "scene":
        return np.zeros(n, dtype=np.int64)
    if unit == "point":
        return np.arange(n, dtype=np.int64)
    if unit == "region":
        if not (scene.region >= 0).any():
            raise PcalError(f"scene {scene.name} has no regions (prepare with --regions supervoxel|cells|kmeans)")
        return scene.region.astype(np.int64)
    return grid_cells(scene.xyz, cell=cell).astype(np.int64)


def unit_mask(ids: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Boolean mask of the points whose unit id is in ``selected``."""
    return np.isin(ids, np.asarray(selected, dtype=np.int64))


def query_mask(ids: np.ndarray, labels: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """The points to label: in a selected unit and still unknown in the round. Points asked
    before (a class or void) are never asked again."""
    return unit_mask(ids, selected) & (labels == UNKNOWN)
