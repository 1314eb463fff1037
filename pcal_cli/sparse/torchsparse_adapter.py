"""Run pcal's sparse convolutions through an installed torchsparse (v2.1 API, CUDA only).

pcal's :class:`Conv3d` keeps its parameters (``kernel`` ``[K, Cin, Cout]`` in torchsparse's offset
order, optional ``bias``); this adapter wraps the pcal tensor as a ``torchsparse.SparseTensor``,
calls ``torchsparse.nn.functional.conv3d`` and wraps the result back. torchsparse's own cache object
is kept in ``SparseCache.backend["torchsparse"]`` so its transposed convolutions find the maps of the
strided ones, exactly as in a pure torchsparse network.
"""

from __future__ import annotations

from torch import Tensor

from pcal_cli.sparse.tensor import SparseTensor, Triple

CACHE_SLOT = "torchsparse"


def conv3d(
    input: SparseTensor,
    kernel: Tensor,
    kernel_size: Triple,
    bias: Tensor | None,
    stride: Triple,
    dilation: Triple,
    transposed: bool,
    training: bool,
) -> SparseTensor:
    """torchsparse's ``conv3d`` on a pcal tensor; returns a pcal tensor sharing the input's cache."""
    import torchsparse
    from torchsparse.nn import functional as ts_functional

    ts_input = torchsparse.SparseTensor(
        feats=input.feats, coords=input.coords.int(), stride=input.stride
    )
    ts_cache = input._caches.backend.get(CACHE_SLOT)
    if ts_cache is None:
        ts_cache = input._caches.backend[CACHE_SLOT] = ts_input._caches
        spatial_range = getattr(ts_input, "spatial_range", None)
        ts_cache.cmaps.setdefault(ts_input.stride, (ts_input.coords, spatial_range))
    ts_input._caches = ts_cache
    output = ts_functional.conv3d(
        ts_input,
        kernel,
        kernel_size,
        bias=bias,
        stride=stride,
        dilation=dilation,
        transposed=transposed,
        training=training,
    )
    return SparseTensor(output.feats, output.coords, output.stride, caches=input._caches)
