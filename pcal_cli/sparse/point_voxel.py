"""SPVCNN point <-> voxel helpers (the ones spvnas keeps next to its models), vectorised.

Point coordinates are float rows ``(batch, x, y, z)`` in stride-1 voxel units; at tensor stride
``s`` a point lies in voxel ``floor(c / s)`` (torchsparse v2.1 level-grid units). Per-stride lookups
are cached on the :class:`PointTensor` and shared by the tensors derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from pcal_cli.sparse.keys import key_layout, lookup
from pcal_cli.sparse.tensor import SparseTensor, Triple

# The 8 corners {0,1}^3 of the trilinear cell, floor corner first.
_CORNERS = tuple((i >> 2 & 1, i >> 1 & 1, i & 1) for i in range(8))


@dataclass
class PointCache:
    """``voxel_index[stride]``: (number of voxels, voxel row of each point or -1);
    ``interpolation[(stride, nearest)]``: (number of voxels, corner rows ``[N, 8]``, weights ``[N, 8]``)."""

    voxel_index: dict[Triple, tuple[int, Tensor]] = field(default_factory=dict)
    interpolation: dict[tuple[Triple, bool], tuple[int, Tensor, Tensor]] = field(default_factory=dict)


class PointTensor:
    """Point features ``[N, C]`` on float coordinates ``[N, 4]`` = (batch, x, y, z)."""

    def __init__(self, feats: Tensor, coords: Tensor, *, caches: PointCache | None = None) -> None:
        if feats.shape[0] != coords.shape[0]:
            raise ValueError(f"{feats.shape[0]} feature rows for {coords.shape[0]} points")
        self.F = feats
        self.C = coords
        self._caches = caches if caches is not None else PointCache()

    @property
    def feats(self) -> Tensor:
        return self.F

    @property
    def coords(self) -> Tensor:
        return self.C

    def with_feats(self, feats: Tensor) -> PointTensor:
        """Same points and cache, new features."""
        return PointTensor(feats, self.C, caches=self._caches)

    def to(self, *args: Any, **kwargs: Any) -> PointTensor:
        """``Tensor.to`` on the features; coordinates follow the device (cache reset if it changes)."""
        feats = self.F.to(*args, **kwargs)
        if feats.device == self.C.device:
            return PointTensor(feats, self.C, caches=self._caches)
        return PointTensor(feats, self.C.to(feats.device))

    def __add__(self, other: PointTensor | Tensor | float) -> PointTensor:
        """Add features (a ``PointTensor`` operand must hold the same points)."""
        value = other.F if isinstance(other, PointTensor) else other
        return self.with_feats(self.F + value)

    __radd__ = __add__


def initial_voxelize(z: PointTensor, pres: float = 1.0, vres: float = 1.0) -> SparseTensor:
    """Stride-1 voxels of the points; voxel feature = mean of its points' features.

    Coordinates are first scaled by ``pres / vres`` (point vs voxel resolution, as in SPVCNN; with
    ``pres != vres`` ``z.C`` is replaced by the scaled coordinates). Caches the point -> voxel index.
    """
    if pres != vres:
        scale = torch.tensor([1.0, pres / vres, pres / vres, pres / vres], dtype=z.C.dtype, device=z.C.device)
        z.C = z.C * scale
    cells = torch.floor(z.C).to(torch.int64)
    layout = key_layout(cells)
    keys, inverse = torch.unique(layout.pack(cells), sorted=True, return_inverse=True)
    coords = layout.unpack(keys).to(torch.int32)
    feats = _scatter_mean(z.F, inverse, torch.ones_like(inverse, dtype=z.F.dtype), keys.shape[0])
    z._caches.voxel_index[(1, 1, 1)] = (keys.shape[0], inverse)
    return SparseTensor(feats, coords, 1)


def point_to_voxel(x: SparseTensor, z: PointTensor) -> SparseTensor:
    """Voxel features of ``x``'s level = mean of the features of the points inside each voxel.

    Voxels without points get zeros; points outside every voxel are ignored.
    """
    index = _voxel_index(x, z)
    valid = (index >= 0).to(z.F.dtype)
    feats = _scatter_mean(z.F, index.clamp(min=0), valid, x.coords.shape[0])
    return x.with_feats(feats)


def voxel_to_point(x: SparseTensor, z: PointTensor, nearest: bool = False) -> PointTensor:
    """Point features interpolated trilinearly from the 8 voxels at ``floor(c / s) + {0,1}^3``.

    Weights of absent voxels are zeroed and the rest renormalised to sum to 1 (a point with no voxel
    around gets zeros). ``nearest=True``: the feature of the voxel containing the point (0 if absent).
    The result shares ``z``'s coordinates and cache.
    """
    rows, weights = _interpolation(x, z, nearest)
    out = x.F.new_zeros((z.C.shape[0], *x.F.shape[1:]))
    safe = rows.clamp(min=0)
    for corner in range(rows.shape[1]):
        w = weights[:, corner].to(x.F.dtype).view(-1, *([1] * (x.F.dim() - 1)))
        out.addcmul_(x.F.index_select(0, safe[:, corner]), w)
    return PointTensor(out, z.C, caches=z._caches)


def _voxel_index(x: SparseTensor, z: PointTensor) -> Tensor:
    cached = z._caches.voxel_index.get(x.stride)
    if cached is not None and cached[0] == x.coords.shape[0]:
        return cached[1]
    cells = _cells(z.C, x.stride)
    index = lookup(x.coords.to(torch.int64), cells)
    z._caches.voxel_index[x.stride] = (x.coords.shape[0], index)
    return index


def _interpolation(x: SparseTensor, z: PointTensor, nearest: bool) -> tuple[Tensor, Tensor]:
    key = (x.stride, nearest)
    cached = z._caches.interpolation.get(key)
    if cached is not None and cached[0] == x.coords.shape[0]:
        return cached[1], cached[2]
    if nearest or x.coords.shape[0] == 0:
        rows = _voxel_index(x, z)[:, None]
        weights = (rows >= 0).to(z.C.dtype)
    else:
        scale = torch.tensor(x.stride, dtype=z.C.dtype, device=z.C.device)
        position = z.C[:, 1:] / scale
        base = torch.floor(position)
        frac = position - base
        cells = torch.cat([z.C[:, :1], base], dim=1).to(torch.int64)
        table = x.coords.to(torch.int64)
        layout = key_layout(table, cells, margin_high=[0, 1, 1, 1])
        sorted_keys, order = torch.sort(layout.pack(table))
        base_keys = layout.pack(cells)
        last = sorted_keys.shape[0] - 1
        absent = torch.full_like(base_keys, -1)
        row_list, weight_list = [], []
        for corner in _CORNERS:
            query = base_keys + layout.offset_key([0, *corner])
            pos = torch.searchsorted(sorted_keys, query).clamp_(max=last)
            hit = sorted_keys.index_select(0, pos) == query
            row_list.append(torch.where(hit, order.index_select(0, pos), absent))
            factors = [frac[:, a] if on else 1 - frac[:, a] for a, on in enumerate(corner)]
            weight_list.append(factors[0] * factors[1] * factors[2] * hit)
        rows = torch.stack(row_list, dim=1)
        weights = torch.stack(weight_list, dim=1)
        total = weights.sum(dim=1, keepdim=True)
        weights = weights / torch.where(total > 0, total, torch.ones_like(total))
    z._caches.interpolation[key] = (x.coords.shape[0], rows, weights)
    return rows, weights


def _cells(points: Tensor, stride: Triple) -> Tensor:
    scale = torch.tensor([1, *stride], dtype=points.dtype, device=points.device)
    return torch.floor(points / scale).to(torch.int64)


def _scatter_mean(values: Tensor, index: Tensor, weight: Tensor, size: int) -> Tensor:
    """Weighted mean of ``values`` rows per ``index`` (rows with zero total weight -> 0)."""
    shape = (-1, *([1] * (values.dim() - 1)))
    sums = values.new_zeros((size, *values.shape[1:])).index_add_(0, index, values * weight.view(shape))
    counts = weight.new_zeros(size).index_add_(0, index, weight)
    return sums / counts.clamp(min=1).view(shape).to(values.dtype)
