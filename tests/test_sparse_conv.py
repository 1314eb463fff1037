"""Sparse convolutions against a brute-force reference (a dict of coordinates, loops over offsets)."""

from __future__ import annotations


import pytest
import torch

import pcal_cli.sparse.nn as spnn
from pcal_cli import sparse
from pcal_cli.sparse import KernelMap, SparseConvFunction, SparseTensor


# ---------------------------------------------------------------------------- reference (tests only)


def ref_offsets(ks: tuple[int, int, int], dil: int = 1) -> list[tuple[int, int, int]]:
    """The documented torchsparse order, written out independently of the library."""
    axes = [[(i - (k - 1) // 2) * dil for i in range(k)] for k in ks]
    if ks[0] * ks[1] * ks[2] % 2:
        return [(x, y, z) for z in axes[2] for y in axes[1] for x in axes[0]]
    return [(x, y, z) for x in axes[0] for y in axes[1] for z in axes[2]]


def ref_down_coords(coords: torch.Tensor, s: int) -> list[tuple[int, ...]]:
    return sorted({(b, x // s, y // s, z // s) for b, x, y, z in coords.tolist()})


def ref_triples(
    in_coords: list, out_coords: list, ks: tuple[int, int, int], s: int, dil: int, transposed: bool
) -> list[tuple[int, int, int]]:
    """(input row, output row, offset) of a conv (or of the adjoint of a strided conv)."""
    table = {tuple(c): i for i, c in enumerate(in_coords)}
    triples = []
    for o, (b, x, y, z) in enumerate(out_coords):
        for k, (dx, dy, dz) in enumerate(ref_offsets(ks, dil)):
            if transposed:  # fine output c reads coarse input p where c = p * s + d
                t = (x - dx, y - dy, z - dz)
                if any(v % s for v in t):
                    continue
                i = table.get((b, *(v // s for v in t)))
            else:
                i = table.get((b, x * s + dx, y * s + dy, z * s + dz))
            if i is not None:
                triples.append((i, o, k))
    return triples


def ref_conv(feats: torch.Tensor, kernel: torch.Tensor, triples: list, n_out: int) -> torch.Tensor:
    i, o, k = (torch.tensor(v, dtype=torch.int64) for v in zip(*triples, strict=True))
    contrib = torch.einsum("pc,pcd->pd", feats[i], kernel[k])
    return feats.new_zeros((n_out, kernel.shape[2])).index_add(0, o, contrib)


def random_coords(n: int, box: int, batches: int = 2, seed: int = 0, low: int = -3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rows = torch.cat(
        [torch.randint(0, batches, (n, 1), generator=g), torch.randint(low, low + box, (n, 3), generator=g)],
        dim=1,
    )
    unique = torch.unique(rows, dim=0)
    return unique[torch.randperm(unique.shape[0], generator=g)].int()  # unsorted input order


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


# --------------------------------------------------------------------------------------- kernel maps


def test_offset_order_matches_torchsparse() -> None:
    for ks in [(3, 3, 3), (2, 2, 2), (3, 1, 3), (5, 5, 5)]:
        assert sparse.kernel_offsets(ks).tolist() == [list(d) for d in ref_offsets(ks)]
    assert sparse.kernel_offsets(3, 2)[0].tolist() == [-2, -2, -2]


@pytest.mark.parametrize("ks,dil", [(3, 1), (3, 2), (5, 1), ((3, 1, 3), 1)])
def test_symmetric_map_equals_full_search(ks, dil) -> None:
    coords = random_coords(400, 8, seed=1)
    half = sparse.submanifold_map(coords, ks, dil, symmetric=True)
    full = sparse.submanifold_map(coords, ks, dil, symmetric=False)
    assert half.identity == full.identity == half.volume // 2
    for k in range(full.volume):
        assert torch.equal(half.in_idx[k], full.in_idx[k])
        assert torch.equal(half.out_idx[k], full.out_idx[k])
    got = {(int(i), int(o), k) for k in range(half.volume) for i, o in zip(*half.pairs(k))}
    kt = sparse.kernel_map.make_triple(ks)
    assert got == set(ref_triples(coords.tolist(), coords.tolist(), kt, 1, dil, False))


@pytest.mark.parametrize("ks,s", [(2, 2), (3, 2), (2, 4)])
def test_strided_map_and_coords(ks, s) -> None:
    coords = random_coords(300, 9, seed=2)
    out = sparse.downsample_coords(coords, s)
    assert [tuple(r) for r in out.tolist()] == ref_down_coords(coords, s)
    kmap = sparse.strided_map(coords, out, ks, s)
    got = {(int(i), int(o), k) for k in range(kmap.volume) for i, o in zip(*kmap.pairs(k))}
    kt = (ks,) * 3
    assert got == set(ref_triples(coords.tolist(), out.tolist(), kt, s, 1, False))
    for k in range(kmap.volume):  # each output at most once per offset
        assert kmap.out_idx[k].unique().numel() == kmap.out_idx[k].numel()


# ------------------------------------------------------------------------------- numerical: layers

CASES = {
    "submanifold": dict(ks=3, s=1, dil=1),
    "submanifold_dilated": dict(ks=3, s=1, dil=2),
    "down_k2s2": dict(ks=2, s=2, dil=1),
    "down_k3s2": dict(ks=3, s=2, dil=1),
    "up_k2s2": dict(ks=2, s=2, dil=1, transposed=True),
    "up_k3s2": dict(ks=3, s=2, dil=1, transposed=True),
}


def _layer_inputs(case: dict, dtype: torch.dtype, cin: int = 5, cout: int = 7, seed: int = 3):
    """A tensor at the level the layer reads (coarse level for transposed) and the expected triples."""
    g = torch.Generator().manual_seed(seed)
    coords = random_coords(350, 8, seed=seed)
    ks, s, dil = case["ks"], case["s"], case["dil"]
    kt = (ks,) * 3
    fine = SparseTensor(torch.randn(coords.shape[0], cin, generator=g, dtype=dtype), coords)
    if case.get("transposed"):
        down = spnn.Conv3d(cin, cin, ks, stride=s).to(dtype)
        coarse = down(fine)
        x = coarse.with_feats(torch.randn(coarse.C.shape[0], cin, generator=g, dtype=dtype))
        triples = ref_triples(x.C.tolist(), coords.tolist(), kt, s, dil, True)
        n_out = coords.shape[0]
    else:
        x = fine
        out_coords = coords.tolist() if s == 1 else ref_down_coords(coords, s)
        triples = ref_triples(coords.tolist(), out_coords, kt, s, dil, False)
        n_out = len(out_coords)
    conv = spnn.Conv3d(cin, cout, ks, stride=s, dilation=dil, transposed=case.get("transposed", False))
    conv = conv.to(dtype)
    with torch.no_grad():
        conv.kernel.copy_(torch.randn(conv.kernel.shape, generator=g, dtype=dtype))
    return x, conv, triples, n_out


@pytest.mark.parametrize("name", list(CASES))
def test_layer_matches_reference(name: str) -> None:
    case = CASES[name]
    x64, conv64, triples, n_out = _layer_inputs(case, torch.float64)
    feats = x64.F.clone().requires_grad_(True)
    y = conv64(x64.with_feats(feats))
    assert y.C.shape[0] == n_out
    if case["s"] == 1 or case.get("transposed"):
        expected_coords = x64._caches.cmaps[(1, 1, 1)]
        assert y.C is expected_coords
    else:
        assert [tuple(r) for r in y.C.tolist()] == ref_down_coords(x64.C, case["s"])
        assert y.s == (case["s"],) * 3
    kernel_ref = conv64.kernel.detach().clone().requires_grad_(True)
    feats_ref = x64.F.clone().requires_grad_(True)
    ref = ref_conv(feats_ref, kernel_ref, triples, n_out)
    assert rel_err(y.F, ref) < 1e-12
    weight = torch.randn(ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    (y.F * weight).sum().backward()
    (ref * weight).sum().backward()
    assert rel_err(feats.grad, feats_ref.grad) < 1e-12
    assert rel_err(conv64.kernel.grad, kernel_ref.grad) < 1e-12

    # float32 against the float64 reference
    x32 = x64.with_feats(x64.F.float().requires_grad_(True))
    conv32 = spnn.Conv3d(conv64.in_channels, conv64.out_channels, conv64.kernel_size, conv64.stride,
                         conv64.dilation, transposed=conv64.transposed)
    with torch.no_grad():
        conv32.kernel.copy_(conv64.kernel.float())
    y32 = conv32(x32)
    (y32.F * weight.float()).sum().backward()
    assert rel_err(y32.F, ref) < 1e-5
    assert rel_err(x32.F.grad, feats_ref.grad) < 1e-5
    assert rel_err(conv32.kernel.grad, kernel_ref.grad) < 1e-5


@pytest.mark.parametrize("name", ["submanifold", "down_k2s2", "up_k2s2"])
def test_gradcheck(name: str) -> None:
    case = CASES[name]
    g = torch.Generator().manual_seed(4)
    coords = random_coords(60, 5, seed=4)
    if case.get("transposed"):
        coarse = sparse.downsample_coords(coords, 2)
        kmap = sparse.strided_map(coords, coarse, 2, 2).transposed()
    elif case["s"] == 2:
        kmap = sparse.strided_map(coords, sparse.downsample_coords(coords, 2), 2, 2)
    else:
        kmap = sparse.submanifold_map(coords, 3)
    feats = torch.randn(kmap.n_in, 2, dtype=torch.float64, generator=g, requires_grad=True)
    kernel = torch.randn(kmap.volume, 2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, w: SparseConvFunction.apply(f, w, kmap), (feats, kernel))


@pytest.mark.parametrize("name", ["submanifold", "down_k3s2", "up_k2s2"])
def test_row_blocks_give_the_same_result(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocked gathers (CPU cache blocking) against one block per offset."""
    x, conv, _, _ = _layer_inputs(CASES[name], torch.float64)
    results = []
    for rows in (2**62, 7):
        monkeypatch.setattr(sparse.conv, "_chunk_rows", lambda kernel, rows=rows: rows)
        feats = x.F.clone().requires_grad_(True)
        y = conv(x.with_feats(feats))
        y.F.sin().sum().backward()
        results.append((y.F.detach(), feats.grad, conv.kernel.grad.clone()))
        conv.kernel.grad = None
    for blocked, whole in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(blocked, whole, rtol=1e-12, atol=1e-12)


def test_backward_keeps_only_one_feature_copy() -> None:
    coords = random_coords(2000, 14, seed=5)
    x = SparseTensor(torch.randn(coords.shape[0], 16, requires_grad=True), coords)
    conv = spnn.Conv3d(16, 16, 3)
    conv(x)  # builds the kernel map outside the hook below
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        conv(x)
    feats_bytes = x.F.numel() * 4
    kernel_bytes = conv.kernel.numel() * 4
    assert sum(saved) <= feats_bytes + kernel_bytes


def test_pointwise_conv_is_plain_matmul() -> None:
    coords = random_coords(100, 6)
    x = SparseTensor(torch.randn(coords.shape[0], 4), coords)
    conv = spnn.Conv3d(4, 6, 1, bias=True)
    assert conv.kernel.shape == (4, 6)
    y = conv(x)
    assert y.C is x.C and y._caches is x._caches
    torch.testing.assert_close(y.F, x.F @ conv.kernel + conv.bias)
    assert spnn.Conv3d(4, 6, 3).kernel.shape == (27, 4, 6)
    assert spnn.Conv3d(4, 6, 2, stride=2).kernel.shape == (8, 4, 6)


def test_single_offset_weight_indices() -> None:
    """A neighbour at +x feeds kernel[14] (x fastest); a child at +x of its parent kernel[4]."""
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.int32)
    x = SparseTensor(torch.tensor([[0.0], [1.0]]), coords)
    sub = spnn.Conv3d(1, 1, 3)
    with torch.no_grad():
        sub.kernel.zero_()
        sub.kernel[14] = 2.0
    assert sub(x).F.flatten().tolist() == [2.0, 0.0]
    down = spnn.Conv3d(1, 1, 2, stride=2)
    with torch.no_grad():
        down.kernel.zero_()
        down.kernel[4] = 3.0
    assert down(x).F.flatten().tolist() == [3.0]


def test_cache_reuse_and_missing_down_map() -> None:
    coords = random_coords(200, 8)
    x = SparseTensor(torch.randn(coords.shape[0], 3), coords)
    a, b = spnn.Conv3d(3, 3), spnn.Conv3d(3, 3)
    y = b(a(x))
    assert y._caches is x._caches and len(x._caches.kmaps) == 1
    kmap = next(iter(x._caches.kmaps.values()))
    assert isinstance(kmap, KernelMap) and kmap.identity == 13
    up = spnn.Conv3d(3, 3, 2, stride=2, transposed=True)
    coarse = SparseTensor(torch.randn(10, 3), coords[:10], stride=2)
    with pytest.raises(ValueError, match="needs the map"):
        up(coarse)


def test_deterministic_on_cpu() -> None:
    coords = random_coords(1500, 12, seed=6)
    x_feats = torch.randn(coords.shape[0], 8, generator=torch.Generator().manual_seed(6))
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        spnn.Conv3d(8, 8), spnn.Conv3d(8, 8, 2, 2), spnn.Conv3d(8, 8, 2, 2, transposed=True)
    )
    results = []
    for _ in range(2):
        feats = x_feats.clone().requires_grad_(True)
        out = net(SparseTensor(feats, coords))
        out.F.square().sum().backward()
        results.append((out.F.detach().clone(), feats.grad.clone(), net[0].kernel.grad.clone()))
        net.zero_grad()
    for first, second in zip(*results, strict=True):
        assert torch.equal(first, second)


def test_autocast_bfloat16_runs() -> None:
    coords = random_coords(200, 8)
    x = SparseTensor(torch.randn(coords.shape[0], 4, requires_grad=True), coords)
    conv = spnn.Conv3d(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.F.dtype == torch.bfloat16
    y.F.float().sum().backward()
    assert x.F.grad.dtype == torch.float32 and conv.kernel.grad.dtype == torch.float32


# ------------------------------------------------------------------------------------- equivariance


class _UNet(torch.nn.Module):
    """Two down-sampling levels, transposed convs back, skip concatenations."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.stem = torch.nn.Sequential(spnn.Conv3d(c, 8), spnn.BatchNorm(8), spnn.ReLU(True))
        self.down1 = spnn.Conv3d(8, 8, 2, stride=2)
        self.enc1 = spnn.Conv3d(8, 8, 3)
        self.down2 = spnn.Conv3d(8, 8, 2, stride=2)
        self.enc2 = spnn.Conv3d(8, 8, 3, dilation=2)
        self.up2 = spnn.Conv3d(8, 8, 2, stride=2, transposed=True)
        self.up1 = spnn.Conv3d(16, 8, 2, stride=2, transposed=True)
        self.head = spnn.Conv3d(16, 3, 1, bias=True)

    def forward(self, x: SparseTensor) -> SparseTensor:
        x0 = self.stem(x)
        x1 = self.enc1(self.down1(x0))
        x2 = self.enc2(self.down2(x1))
        y1 = sparse.cat([self.up2(x2), x1])
        return self.head(sparse.cat([self.up1(y1), x0]))


def test_translation_by_stride_multiple_is_equivariant() -> None:
    torch.manual_seed(0)
    net = _UNet().double().eval()
    coords = random_coords(800, 12, seed=7)
    feats = torch.randn(coords.shape[0], 4, dtype=torch.float64)
    shift = torch.tensor([0, -8, 12, -4], dtype=torch.int32)  # multiples of the total stride 4
    out = net(SparseTensor(feats, coords))
    moved = net(SparseTensor(feats, coords + shift))
    torch.testing.assert_close(moved.F, out.F, rtol=1e-12, atol=1e-12)
    assert torch.equal(moved.C, coords + shift)
    # a shift that is not a multiple of 4 changes the coarse grouping (the test can fail)
    other = net(SparseTensor(feats, coords + torch.tensor([0, 1, 0, 0], dtype=torch.int32)))
    assert not torch.allclose(other.F, out.F)
