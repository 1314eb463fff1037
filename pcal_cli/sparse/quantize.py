"""Voxelisation of point coordinates with torchsparse v2.x's ``sparse_quantize`` signature."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from pcal_cli.sparse.keys import key_layout

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
    (``voxels[inverse] == floor(coords / voxel_size)``). numpy in -> numpy out, torch in -> torch out.
    """
    is_numpy = isinstance(coords, np.ndarray)
    points = torch.from_numpy(np.ascontiguousarray(coords)) if is_numpy else coords
    size = torch.as_tensor(voxel_size, dtype=torch.float64, device=points.device)
    if points.dtype.is_floating_point or size.ne(1).any():
        cells = torch.floor(points.to(torch.float64) / size).to(torch.int64)
    else:
        cells = points.to(torch.int64)
    layout = key_layout(cells)
    keys, inverse = torch.unique(layout.pack(cells), sorted=True, return_inverse=True)
    voxels = layout.unpack(keys).to(torch.int32)
    outputs: list[Any] = [voxels]
    if return_index:
        first = torch.full_like(keys, points.shape[0])
        rows = torch.arange(points.shape[0], device=points.device)
        outputs.append(first.scatter_reduce_(0, inverse, rows, reduce="amin"))
    if return_inverse:
        outputs.append(inverse)
    if is_numpy:
        outputs = [t.cpu().numpy() for t in outputs]
    return outputs[0] if len(outputs) == 1 else outputs
