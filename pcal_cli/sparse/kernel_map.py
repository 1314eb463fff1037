"""Kernel maps: for each kernel offset, the (input row, output row) pairs a convolution connects.

Convention (torchsparse v2.1 / MinkowskiEngine): output ``o`` at offset ``d`` reads the input at
``o * stride + d * dilation`` (coordinates in level-grid units). Offsets per axis are
``arange(k) - (k - 1) // 2`` (``{-1, 0, 1}`` for k = 3, ``{0, 1}`` for k = 2); for an odd kernel
volume x varies fastest (z outermost), for an even volume x is outermost, so weight index ``k``
matches torchsparse's ``kernel[k]`` one to one.

Maps are built from sorted int64 keys and ``torch.searchsorted``. Submanifold maps of symmetric
kernels search only the offsets before the centre and mirror the rest: if ``(i -> j)`` is a pair
of offset ``d`` then ``(j -> i)`` is a pair of ``-d``, whose index is ``K - 1 - k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import prod

import torch
from torch import Tensor

from pcal_cli.sparse.keys import key_layout
from pcal_cli.sparse.tensor import Triple, make_triple


@dataclass(frozen=True)
class KernelMap:
    """Per-offset pair lists of one convolution.

    ``in_idx[k]`` / ``out_idx[k]``: rows connected by offset ``k`` (each output row appears at most
    once per offset). ``identity``: index of an offset that maps every row to itself (the centre of a
    submanifold map); its pair lists are left empty and the convolution uses a plain matmul.
    """

    in_idx: tuple[Tensor, ...]
    out_idx: tuple[Tensor, ...]
    n_in: int
    n_out: int
    identity: int | None = None

    @property
    def volume(self) -> int:
        """Number of kernel offsets."""
        return len(self.in_idx)

    @property
    def num_pairs(self) -> int:
        """Total number of (input, output) pairs, identity included."""
        pairs = sum(int(t.numel()) for t in self.in_idx)
        return pairs + (self.n_in if self.identity is not None else 0)

    def pairs(self, k: int) -> tuple[Tensor, Tensor]:
        """``(in_idx, out_idx)`` of offset ``k``, identity materialised."""
        if k == self.identity:
            rows = torch.arange(self.n_in, device=self.in_idx[k].device)
            return rows, rows
        return self.in_idx[k], self.out_idx[k]

    def transposed(self) -> KernelMap:
        """The adjoint map (inputs and outputs swapped), used by transposed convolutions."""
        return KernelMap(self.out_idx, self.in_idx, self.n_out, self.n_in, self.identity)

    def to(self, device: torch.device | str) -> KernelMap:
        return KernelMap(
            tuple(t.to(device) for t in self.in_idx),
            tuple(t.to(device) for t in self.out_idx),
            self.n_in,
            self.n_out,
            self.identity,
        )


def kernel_offsets(
    kernel_size: int | Sequence[int], dilation: int | Sequence[int] = 1
) -> Tensor:
    """``[K, 3]`` int64 offsets (dx, dy, dz) in weight order, multiplied by the dilation."""
    ks = make_triple(kernel_size, "kernel_size")
    dil = torch.tensor(make_triple(dilation, "dilation"), dtype=torch.int64)
    axes = [torch.arange(k, dtype=torch.int64) - (k - 1) // 2 for k in ks]
    if prod(ks) % 2 == 1:
        gz, gy, gx = torch.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    else:
        gx, gy, gz = torch.meshgrid(axes[0], axes[1], axes[2], indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1), gz.reshape(-1)], dim=1) * dil


def downsample_coords(coords: Tensor, stride: int | Sequence[int]) -> Tensor:
    """``unique(floor(c / stride))`` per batch, sorted by (batch, x, y, z); dtype kept."""
    parents = _parents(coords, make_triple(stride, "stride"))
    layout = key_layout(parents)
    return layout.unpack(torch.unique(layout.pack(parents))).to(coords.dtype)


def submanifold_map(
    coords: Tensor,
    kernel_size: int | Sequence[int] = 3,
    dilation: int | Sequence[int] = 1,
    *,
    symmetric: bool = True,
) -> KernelMap:
    """Map of a stride-1 convolution whose output coordinates are its input coordinates.

    With ``symmetric`` (and a kernel that is odd on every axis) only the offsets before the centre
    are searched; the others are mirrored. The result is identical to a full search.
    """
    offsets = kernel_offsets(kernel_size, dilation)
    volume = offsets.shape[0]
    n = coords.shape[0]
    reach = offsets.abs().amax(dim=0).tolist()
    layout = key_layout(coords, margin_low=[0, *reach], margin_high=[0, *reach])
    sorted_keys, order = torch.sort(layout.pack(coords))
    zero = (offsets == 0).all(dim=1).nonzero().flatten().tolist()
    identity = zero[0] if zero else None
    mirrored = symmetric and all(k % 2 == 1 for k in make_triple(kernel_size))
    searched = range(volume // 2) if mirrored else range(volume)
    empty = torch.empty(0, dtype=torch.int64, device=coords.device)
    in_idx: list[Tensor] = [empty] * volume
    out_idx: list[Tensor] = [empty] * volume
    for k in searched:
        if k == identity:
            continue
        query = sorted_keys + layout.offset_key([0, *offsets[k].tolist()])
        pos = torch.searchsorted(sorted_keys, query).clamp_(max=max(n - 1, 0))
        hit = sorted_keys.index_select(0, pos) == query
        outs = order[hit]
        ins = order.index_select(0, pos[hit])
        in_idx[k], out_idx[k] = ins, outs
        if mirrored:
            in_idx[volume - 1 - k], out_idx[volume - 1 - k] = outs, ins
    return KernelMap(tuple(in_idx), tuple(out_idx), n, n, identity)


def strided_map(
    coords: Tensor,
    out_coords: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int],
    dilation: int | Sequence[int] = 1,
) -> KernelMap:
    """Map of a strided convolution from ``coords`` to ``out_coords`` (level-grid units of each)."""
    offsets = kernel_offsets(kernel_size, dilation)
    st = make_triple(stride, "stride")
    base = out_coords.to(torch.int64) * torch.tensor([1, *st], device=out_coords.device)
    low = [0, *(-offsets.amin(dim=0)).clamp(min=0).tolist()]
    high = [0, *offsets.amax(dim=0).clamp(min=0).tolist()]
    layout = key_layout(coords, base, margin_low=low, margin_high=high)
    sorted_keys, order = torch.sort(layout.pack(coords))
    base_keys = layout.pack(base)
    rows = torch.arange(out_coords.shape[0], device=coords.device)
    last = max(coords.shape[0] - 1, 0)
    in_idx: list[Tensor] = []
    out_idx: list[Tensor] = []
    for k in range(offsets.shape[0]):
        query = base_keys + layout.offset_key([0, *offsets[k].tolist()])
        pos = torch.searchsorted(sorted_keys, query).clamp_(max=last)
        hit = sorted_keys.index_select(0, pos) == query
        in_idx.append(order.index_select(0, pos[hit]))
        out_idx.append(rows[hit])
    return KernelMap(tuple(in_idx), tuple(out_idx), coords.shape[0], out_coords.shape[0])


def _parents(coords: Tensor, stride: Triple) -> Tensor:
    divisor = torch.tensor([1, *stride], dtype=coords.dtype, device=coords.device)
    return torch.div(coords, divisor, rounding_mode="floor")
