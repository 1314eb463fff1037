"""Geometry: grids, neighbours, normals and the builders of labelling units (regions)."""

from pcal_cli.geometry.grid import grid_subsample, group_by_cell, voxel_keys
from pcal_cli.geometry.neighbours import estimate_normals, knn
from pcal_cli.geometry.regions import (
    INDOOR,
    OUTDOOR,
    REGION_BUILDERS,
    build_regions,
    grid_cells,
    kmeans_chunks,
    supervoxel_preset,
    supervoxels,
)

__all__ = [
    "INDOOR", "OUTDOOR", "REGION_BUILDERS", "build_regions", "estimate_normals", "grid_cells",
    "grid_subsample", "group_by_cell", "kmeans_chunks", "knn", "supervoxel_preset", "supervoxels",
    "voxel_keys",
]
