"""Labelling units: supervoxels, fixed grid cells and k-means chunks, and the registry of builders.

Every builder takes point coordinates ``(N, 3)`` and returns one int32 region id per point,
contiguous ``0..R-1`` (``build_regions("none", ...)`` returns ``-1`` everywhere). Builders are
deterministic: same input (and seed), same ids, bit for bit. See ``docs/regions.md``.

One builder a module: :mod:`.supervoxel` (:func:`supervoxels` and its presets), :mod:`.cells`
(:func:`grid_cells`) and :mod:`.kmeans` (:func:`kmeans_chunks`); :mod:`.ids` holds what they
share. This module names them (:data:`REGION_BUILDERS`) and dispatches by name
(:func:`build_regions`); every public name is importable from here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from pcal_cli.errors import PcalError
from pcal_cli.geometry.grid import as_points
from pcal_cli.geometry.regions.cells import grid_cells
from pcal_cli.geometry.regions.kmeans import kmeans_chunks
from pcal_cli.geometry.regions.supervoxel import (
    INDOOR,
    OUTDOOR,
    SUPERVOXEL_PRESETS,
    supervoxel_preset,
    supervoxels,
)

__all__ = [
    "INDOOR", "OUTDOOR", "REGION_BUILDERS", "SUPERVOXEL_PRESETS", "build_regions", "grid_cells",
    "kmeans_chunks", "supervoxel_preset", "supervoxels",
]


def _no_regions(xyz: np.ndarray) -> np.ndarray:
    """No labelling units: every point gets ``-1``."""
    return np.full(len(as_points(xyz)), -1, dtype=np.int32)


REGION_BUILDERS: dict[str, Callable[..., np.ndarray]] = {
    "supervoxel": supervoxels,
    "cells": grid_cells,
    "kmeans": kmeans_chunks,
    "none": _no_regions,
}


def build_regions(kind: str, xyz: np.ndarray, rgb: np.ndarray | None = None, *, seed: int = 0,
                  **params: Any) -> np.ndarray:
    """Region ids (int32 per point) from the builder named ``kind`` with its keyword ``params``.

    ``rgb`` is used by ``supervoxel`` only and ``seed`` by ``kmeans`` only; unknown kinds and
    unknown parameters raise :class:`PcalError`.
    """
    try:
        builder = REGION_BUILDERS[kind]
    except (KeyError, TypeError):
        raise PcalError(f"unknown region kind '{kind}' (known: {', '.join(REGION_BUILDERS)})") from None
    accepted = set(inspect.signature(builder).parameters) - {"xyz", "rgb", "seed"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        known = ", ".join(sorted(accepted)) or "none"
        raise PcalError(f"unknown option '{unknown[0]}' for regions '{kind}' (known: {known})")
    if kind == "supervoxel":
        return builder(xyz, rgb, **params)
    if kind == "kmeans":
        return builder(xyz, seed=seed, **params)
    return builder(xyz, **params)
