"""Sparse voxel tensor with torchsparse v2.1 semantics, and the cache shared along a network.

Coordinates are integer rows ``(batch, x, y, z)``; at tensor stride ``s`` they are level-grid units
``floor(c / s)`` of the stride-1 grid (torchsparse v2.1 convention, not v1/v2.0's ``floor(c/s)*s``).
Every layer passes its input's :class:`SparseCache` on to its output, so a transposed convolution
finds the kernel map and the coordinates recorded by the matching strided convolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

Triple = tuple[int, int, int]


def make_triple(value: int | Sequence[int], name: str = "value") -> Triple:
    """``3`` -> ``(3, 3, 3)``; a 3-sequence is returned as a tuple of ints."""
    if isinstance(value, int):
        return (value, value, value)
    values = tuple(int(v) for v in value)
    if len(values) != 3:
        raise ValueError(f"{name} must be an int or 3 ints, got {value!r}")
    return values  # type: ignore[return-value]


@dataclass
class SparseCache:
    """State shared by all tensors derived from one input.

    ``cmaps[stride]``: coordinates of the level at that tensor stride.
    ``kmaps[(tensor_stride, kernel_size, stride, dilation)]``: kernel maps (see ``kernel_map.py``).
    ``backend``: state of a foreign engine (torchsparse keeps its own cache object there).
    """

    cmaps: dict[Triple, Tensor] = field(default_factory=dict)
    kmaps: dict[tuple[Triple, Triple, Triple, Triple], Any] = field(default_factory=dict)
    backend: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> SparseCache:
        """Copy with coordinates and kernel maps on ``device`` (foreign engine state is dropped)."""
        return SparseCache(
            cmaps={s: c.to(device) for s, c in self.cmaps.items()},
            kmaps={k: m.to(device) for k, m in self.kmaps.items()},
        )


class SparseTensor:
    """Features ``[N, C]`` on unique integer coordinates ``[N, 4]`` = (batch, x, y, z).

    A single sample may also carry ``[N, 3]`` coordinates (x, y, z); ``sparse_collate`` prepends the
    batch column. ``stride`` is the tensor stride (stored as a 3-tuple, alias ``.s``).
    """

    def __init__(
        self,
        feats: Tensor,
        coords: Tensor,
        stride: int | Sequence[int] = 1,
        *,
        caches: SparseCache | None = None,
    ) -> None:
        if feats.shape[0] != coords.shape[0]:
            raise ValueError(f"{feats.shape[0]} feature rows for {coords.shape[0]} coordinates")
        self.feats = feats
        self.coords = coords
        self.stride = make_triple(stride, "stride")
        self._caches = caches if caches is not None else SparseCache()
        self._caches.cmaps.setdefault(self.stride, coords)

    @property
    def F(self) -> Tensor:  # noqa: N802 - torchsparse name
        """Features."""
        return self.feats

    @F.setter
    def F(self, feats: Tensor) -> None:  # noqa: N802
        self.feats = feats

    @property
    def C(self) -> Tensor:  # noqa: N802 - torchsparse name
        """Coordinates."""
        return self.coords

    @C.setter
    def C(self, coords: Tensor) -> None:  # noqa: N802
        self.coords = coords

    @property
    def s(self) -> Triple:
        """Tensor stride."""
        return self.stride

    def with_feats(self, feats: Tensor) -> SparseTensor:
        """Same coordinates, stride and cache, new features."""
        return SparseTensor(feats, self.coords, self.stride, caches=self._caches)

    def to(self, *args: Any, **kwargs: Any) -> SparseTensor:
        """``Tensor.to`` on the features; coordinates and cache follow the device (new tensor)."""
        feats = self.feats.to(*args, **kwargs)
        if feats.device == self.coords.device:
            return SparseTensor(feats, self.coords, self.stride, caches=self._caches)
        caches = self._caches.to(feats.device)
        coords = caches.cmaps.get(self.stride)
        if coords is None or coords.shape[0] != self.coords.shape[0]:
            coords = self.coords.to(feats.device)
        return SparseTensor(feats, coords, self.stride, caches=caches)

    def cpu(self) -> SparseTensor:
        return self.to("cpu")

    def cuda(self) -> SparseTensor:
        return self.to("cuda")

    def detach(self) -> SparseTensor:
        return self.with_feats(self.feats.detach())

    def __len__(self) -> int:
        return self.coords.shape[0]

    def __add__(self, other: SparseTensor | Tensor | float) -> SparseTensor:
        """Add features; a ``SparseTensor`` operand must have the same coordinates (rows aligned)."""
        if isinstance(other, SparseTensor):
            _check_aligned(self, other)
            return self.with_feats(self.feats + other.feats)
        return self.with_feats(self.feats + other)

    __radd__ = __add__

    def __repr__(self) -> str:
        return (
            f"SparseTensor(n={self.coords.shape[0]}, channels={tuple(self.feats.shape[1:])}, "
            f"stride={self.stride}, dtype={self.feats.dtype}, device={self.feats.device})"
        )


def cat(inputs: Sequence[SparseTensor]) -> SparseTensor:
    """Concatenate features along channels; coordinates, stride and cache come from the first."""
    if not inputs:
        raise ValueError("cat needs at least one SparseTensor")
    first = inputs[0]
    for other in inputs[1:]:
        _check_aligned(first, other)
    return first.with_feats(torch.cat([x.feats for x in inputs], dim=1))


def _check_aligned(a: SparseTensor, b: SparseTensor) -> None:
    if a.stride != b.stride:
        raise ValueError(f"tensor strides differ: {a.stride} vs {b.stride}")
    if a.coords is b.coords:
        return
    if a.coords.shape != b.coords.shape or not torch.equal(a.coords, b.coords):
        raise ValueError("sparse tensors have different coordinates (rows are not aligned)")
