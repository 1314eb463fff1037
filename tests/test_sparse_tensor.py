"""SparseTensor, cat/+, sparse_quantize and collation."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from pcal_cli import sparse
from pcal_cli.sparse import SparseTensor, sparse_collate, sparse_collate_fn, sparse_quantize


def _tensor(n: int = 6, c: int = 2) -> SparseTensor:
    coords = torch.stack([torch.zeros(n), torch.arange(n), torch.zeros(n), torch.zeros(n)], 1).int()
    return SparseTensor(torch.randn(n, c), coords)


def test_aliases_stride_and_cache() -> None:
    x = _tensor()
    assert x.F is x.feats and x.C is x.coords and x.s == (1, 1, 1)
    assert SparseTensor(x.F, x.C, stride=2).s == (2, 2, 2)
    assert x._caches.cmaps[(1, 1, 1)] is x.C
    x64 = x.to(torch.float64)
    assert x64.F.dtype == torch.float64 and x64.C is x.C and x64._caches is x._caches


def test_add_and_cat_require_aligned_rows() -> None:
    x = _tensor()
    y = x.with_feats(torch.ones_like(x.F))
    torch.testing.assert_close((x + y).F, x.F + 1)
    z = sparse.cat([x, y, y])
    assert z.F.shape == (6, 6) and z.C is x.C and z._caches is x._caches
    shifted = SparseTensor(torch.randn(6, 2), x.C + 1)
    with pytest.raises(ValueError, match="different coordinates"):
        x + shifted
    with pytest.raises(ValueError, match="different coordinates"):
        sparse.cat([x, shifted])
    assert torch.equal((x + SparseTensor(x.F, x.C.clone())).F, 2 * x.F)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_sparse_quantize_index_and_inverse(kind: str) -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, size=(2000, 3)).astype(np.float32)
    points[1000:] = points[:1000] + rng.uniform(-0.02, 0.02, size=(1000, 3)).astype(np.float32)
    data = points if kind == "numpy" else torch.from_numpy(points)
    voxels, index, inverse = sparse_quantize(data, 0.1, return_index=True, return_inverse=True)
    expected_type = np.ndarray if kind == "numpy" else torch.Tensor
    assert all(isinstance(a, expected_type) for a in (voxels, index, inverse))
    voxels, index, inverse = (np.asarray(a) for a in (voxels, index, inverse))
    assert voxels.dtype == np.int32 and index.dtype == np.int64 and inverse.dtype == np.int64
    cells = np.floor(points.astype(np.float64) / 0.1).astype(np.int64)
    first: dict[tuple, int] = {}
    for i, cell in enumerate(map(tuple, cells)):
        first.setdefault(cell, i)
    assert sorted(first) == [tuple(v) for v in voxels]  # unique, lexicographically sorted
    assert index.tolist() == [first[tuple(v)] for v in voxels]  # first point in input order
    np.testing.assert_array_equal(voxels[inverse], cells)
    np.testing.assert_array_equal(cells[index], voxels)
    only = sparse_quantize(data, 0.1)
    assert isinstance(only, expected_type) and np.array_equal(np.asarray(only), voxels)


def test_sparse_quantize_integer_input_and_per_axis_size() -> None:
    coords = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 0], [3, 5, 1]])
    voxels, inverse = sparse_quantize(coords, return_inverse=True)
    assert voxels.tolist() == [[0, 0, 0], [1, 0, 0], [3, 5, 1]] and inverse.tolist() == [0, 1, 0, 2]
    assert sparse_quantize(coords, (2, 1, 1)).tolist() == [[0, 0, 0], [1, 5, 1]]


def test_sparse_collate_prepends_batch() -> None:
    a = SparseTensor(torch.randn(3, 2), torch.randint(0, 5, (3, 3), dtype=torch.int32))
    b = SparseTensor(torch.randn(5, 2), torch.randint(0, 5, (5, 3), dtype=torch.int32))
    batch = sparse_collate([a, b])
    assert batch.C.shape == (8, 4) and batch.C.dtype == torch.int32
    assert batch.C[:, 0].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert torch.equal(batch.C[3:, 1:], b.C) and torch.equal(batch.F[:3], a.F)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        sparse_collate([batch])


def test_sparse_collate_fn_per_key() -> None:
    samples = [
        {
            "lidar": SparseTensor(torch.randn(n, 1), torch.zeros(n, 3, dtype=torch.int32)),
            "label": np.full(4, n),
            "meta": {"scale": torch.tensor(float(n))},
            "name": f"scene{n}",
        }
        for n in (2, 3)
    ]
    batch = sparse_collate_fn(samples)
    assert batch["lidar"].C[:, 0].tolist() == [0, 0, 1, 1, 1]
    assert torch.equal(batch["label"], torch.tensor([[2] * 4, [3] * 4]))
    assert batch["meta"]["scale"].tolist() == [2.0, 3.0]
    assert batch["name"] == ["scene2", "scene3"]
