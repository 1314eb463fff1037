"""SPVCNN point <-> voxel helpers."""

from __future__ import annotations


import torch

import pcal_cli.sparse.nn as spnn
from pcal_cli.sparse import (
    PointTensor,
    SparseTensor,
    initial_voxelize,
    point_to_voxel,
    voxel_to_point,
)


def _points(n: int, box: float, seed: int = 0) -> PointTensor:
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(n, 3, generator=g, dtype=torch.float64) * box - 2.0
    batch = torch.randint(0, 2, (n, 1), generator=g).double()
    return PointTensor(torch.randn(n, 3, generator=g, dtype=torch.float64), torch.cat([batch, xyz], 1))


def _brute_mean(z: PointTensor, coords: torch.Tensor, stride: int) -> torch.Tensor:
    rows = {tuple(c): i for i, c in enumerate(coords.tolist())}
    sums = torch.zeros(coords.shape[0], z.F.shape[1], dtype=z.F.dtype)
    counts = torch.zeros(coords.shape[0], dtype=z.F.dtype)
    cells = torch.floor(z.C / torch.tensor([1.0, stride, stride, stride], dtype=z.C.dtype)).long()
    for p, cell in enumerate(cells.tolist()):
        i = rows.get(tuple(cell))
        if i is not None:
            sums[i] += z.F[p]
            counts[i] += 1
    return sums / counts.clamp(min=1)[:, None]


def test_initial_voxelize_means_point_features() -> None:
    z = _points(3000, 6.0)
    x = initial_voxelize(z)
    assert x.s == (1, 1, 1) and x.C.dtype == torch.int32
    assert torch.equal(x.C.long(), torch.unique(torch.floor(z.C).long(), dim=0))
    torch.testing.assert_close(x.F, _brute_mean(z, x.C, 1))


def test_initial_voxelize_scales_by_resolutions() -> None:
    z = _points(50, 6.0)
    original = z.C.clone()
    x = initial_voxelize(z, pres=0.05, vres=0.1)
    torch.testing.assert_close(z.C[:, 1:], original[:, 1:] * 0.5)
    assert torch.equal(z.C[:, 0], original[:, 0])
    assert x.C.shape[0] == torch.unique(torch.floor(z.C).long(), dim=0).shape[0]


def test_point_to_voxel_at_stride_two() -> None:
    z = _points(3000, 6.0, seed=1)
    x1 = initial_voxelize(z)
    x2 = spnn.Conv3d(3, 3, 2, stride=2).double()(x1)
    y = point_to_voxel(x2, z)
    assert y.C is x2.C and y.s == (2, 2, 2) and y._caches is x2._caches
    torch.testing.assert_close(y.F, _brute_mean(z, x2.C, 2))


def test_voxel_to_point_is_exact_on_linear_fields() -> None:
    g = torch.Generator().manual_seed(2)
    stride = 2
    grid = torch.stack(torch.meshgrid(*[torch.arange(-1, 4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    coords = torch.cat([torch.zeros(len(grid), 1, dtype=torch.int64), grid], 1).int()
    a = torch.randn(3, 4, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    x = SparseTensor(grid.double() @ a + b, coords, stride=stride)
    inside = torch.rand(500, 3, generator=g, dtype=torch.float64) * 4 - 1  # level units in [-1, 3)
    z = PointTensor(torch.zeros(500, 1, dtype=torch.float64),
                    torch.cat([torch.zeros(500, 1, dtype=torch.float64), inside * stride], 1))
    out = voxel_to_point(x, z)
    torch.testing.assert_close(out.F, inside @ a + b, rtol=1e-12, atol=1e-12)
    assert out.C is z.C and out._caches is z._caches
    nearest = voxel_to_point(x, z, nearest=True)
    torch.testing.assert_close(nearest.F, torch.floor(inside) @ a + b)


def test_voxel_to_point_renormalises_missing_voxels_and_has_gradients() -> None:
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.int32)
    feats = torch.tensor([[1.0], [3.0]], dtype=torch.float64, requires_grad=True)
    x = SparseTensor(feats, coords)
    points = torch.tensor([[0, 0.25, 0.5, 0.5], [0, 5.5, 5.5, 5.5], [1, 0.5, 0.5, 0.5]], dtype=torch.float64)
    z = PointTensor(torch.zeros(3, 1, dtype=torch.float64), points)
    out = voxel_to_point(x, z)
    # only the two voxels along x exist: weights 0.75 / 0.25; no voxel around -> 0; other batch -> 0
    torch.testing.assert_close(out.F.flatten(), torch.tensor([1.5, 0.0, 0.0], dtype=torch.float64))
    out.F.sum().backward()
    torch.testing.assert_close(feats.grad.flatten(), torch.tensor([0.75, 0.25], dtype=torch.float64))
