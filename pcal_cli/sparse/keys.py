"""Integer coordinates packed into sortable int64 keys, and exact lookup of rows by coordinates.

A :class:`KeyLayout` ravels ``D``-column integer coordinates (e.g. batch, x, y, z) into one int64 per
row, in lexicographic order (first column most significant). Because the packing is linear, the key
of ``c + d`` is ``key(c) + offset_key(d)`` as long as ``c + d`` stays inside the layout's range; the
kernel-map builders use that to search shifted copies of one sorted key array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

_MAX_KEYS = 2**62  # keep one bit of headroom below int64 overflow for offset arithmetic


@dataclass(frozen=True)
class KeyLayout:
    """Ravel layout: column ``j`` holds values ``low[j] .. low[j] + extent[j] - 1``."""

    low: tuple[int, ...]
    extent: tuple[int, ...]

    @property
    def weights(self) -> tuple[int, ...]:
        """Key increment of one unit step in each column."""
        out = [1] * len(self.extent)
        for j in range(len(self.extent) - 2, -1, -1):
            out[j] = out[j + 1] * self.extent[j + 1]
        return tuple(out)

    def pack(self, coords: Tensor) -> Tensor:
        """``[N, D]`` integer coordinates inside the layout -> ``[N]`` int64 keys."""
        columns = coords.to(torch.int64)
        weights = self.weights
        key = columns[:, 0] * weights[0]
        for j in range(1, len(weights)):
            key.add_(columns[:, j], alpha=weights[j])
        return key.sub_(sum(lo * w for lo, w in zip(self.low, weights, strict=True)))

    def unpack(self, keys: Tensor) -> Tensor:
        """``[N]`` int64 keys -> ``[N, D]`` int64 coordinates (inverse of :meth:`pack`)."""
        low = torch.tensor(self.low, dtype=torch.int64, device=keys.device)
        weights = torch.tensor(self.weights, dtype=torch.int64, device=keys.device)
        extent = torch.tensor(self.extent, dtype=torch.int64, device=keys.device)
        return torch.div(keys[:, None], weights, rounding_mode="floor") % extent + low

    def offset_key(self, offset: Sequence[int]) -> int:
        """Key difference produced by adding ``offset`` (one value per column) to a coordinate."""
        return sum(int(d) * w for d, w in zip(offset, self.weights, strict=True))


def key_layout(
    *coords: Tensor,
    margin_low: Sequence[int] | int = 0,
    margin_high: Sequence[int] | int = 0,
) -> KeyLayout:
    """Smallest layout holding every row of ``coords`` widened by the margins, per column.

    Raises ``ValueError`` when the packed range would not fit into int64.
    """
    tensors = [c for c in coords if c.shape[0] > 0]
    ncols = coords[0].shape[1]
    lows = _per_column(margin_low, ncols)
    highs = _per_column(margin_high, ncols)
    if tensors:
        stacked_min = torch.stack([t.amin(dim=0) for t in tensors]).amin(dim=0)
        stacked_max = torch.stack([t.amax(dim=0) for t in tensors]).amax(dim=0)
        bounds = torch.stack([stacked_min, stacked_max]).to(torch.int64).tolist()
    else:
        bounds = [[0] * ncols, [0] * ncols]
    low = tuple(int(v) - m for v, m in zip(bounds[0], lows, strict=True))
    extent = tuple(
        int(hi) + m - lo + 1 for hi, m, lo in zip(bounds[1], highs, low, strict=True)
    )
    total = 1
    for e in extent:
        total *= e
    if total >= _MAX_KEYS:
        raise ValueError(f"coordinate range {extent} is too large to pack into int64 keys")
    return KeyLayout(low=low, extent=extent)


def lookup(table: Tensor, queries: Tensor) -> Tensor:
    """Row of ``table`` equal to each row of ``queries`` (int64, ``-1`` where absent).

    ``table`` rows must be unique. Vectorised: one sort of the table, one ``searchsorted``.
    """
    out = torch.full((queries.shape[0],), -1, dtype=torch.int64, device=queries.device)
    if table.shape[0] == 0 or queries.shape[0] == 0:
        return out
    layout = key_layout(table, queries)
    sorted_keys, order = torch.sort(layout.pack(table))
    query_keys = layout.pack(queries)
    pos = torch.searchsorted(sorted_keys, query_keys).clamp_(max=sorted_keys.shape[0] - 1)
    hit = sorted_keys.index_select(0, pos) == query_keys
    return torch.where(hit, order.index_select(0, pos), out)


def _per_column(value: Sequence[int] | int, ncols: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * ncols
    values = tuple(int(v) for v in value)
    if len(values) != ncols:
        raise ValueError(f"expected {ncols} margins, got {len(values)}")
    return values
