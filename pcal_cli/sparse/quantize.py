"""Voxelisation of point coordinates with torchsparse v2.x's ``sparse_quantize`` signature."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from pcal_cli.geometry.voxels import voxel_grid

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


def sparse_quantize(
    coords: ArrayT,
    voxel_size: float | Sequence[float] = 1,
    *,
    return_index: bool = False,
    return_inverse: bool = False,
) -> ArrayT | list[Any]:
    """Unique voxels of ``floor(coords / voxel_size)``, sorted lexicographically by column.

    Returns the int32 voxel coordinates ``[M, D]``; with ``return_index`` also the int64 index of the
    first point (in input order) of each voxel, with ``return_inverse`` the int64 voxel of every point
    (``voxels[inverse] == floor(coords / voxel_size)``). numpy in -> numpy out, torch in -> torch out
    (computed on the CPU by :func:`pcal_cli.geometry.voxels.voxel_grid`, pcal's one voxeliser).
    """
    is_numpy = isinstance(coords, np.ndarray)
    points = np.asarray(coords) if is_numpy else coords.detach().cpu().numpy()
    cells, first, inverse = voxel_grid(points.astype(np.float64), voxel_size)
    outputs: list[Any] = [cells.astype(np.int32)]
    if return_index:
        outputs.append(first)
    if return_inverse:
        outputs.append(inverse)
    if not is_numpy:
        outputs = [torch.from_numpy(a).to(coords.device) for a in outputs]
    return outputs[0] if len(outputs) == 1 else outputs
