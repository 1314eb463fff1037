"""Sparse convolution in plain PyTorch: per-offset gather -> matmul -> ``index_add_``.

:class:`SparseConvFunction` has a hand-written backward and saves only the input features, the
kernel and the kernel map, so a layer costs about one extra feature copy of memory (autograd would
otherwise keep every per-offset gathered block). Within one offset every output (and every input)
row appears at most once, so the scatter order never changes results: the engine is deterministic
on CPU, and the ``index_add_`` of one offset has no colliding rows on CUDA either.
:func:`conv3d` chooses, builds or reuses the kernel map through the tensor's shared cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from pcal_cli.sparse.kernel_map import (
    KernelMap,
    downsample_coords,
    strided_map,
    submanifold_map,
)
from pcal_cli.sparse.tensor import SparseTensor, Triple, make_triple

_CHUNK_VALUES = 2**19


class SparseConvFunction(torch.autograd.Function):
    """``out[o] = sum_k sum_{(i, o) in map[k]} feats[i] @ kernel[k]`` with a memory-lean backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, feats: Tensor, kernel: Tensor, kmap: KernelMap
    ) -> Tensor:
        ctx.kmap = kmap  # type: ignore[attr-defined]
        ctx.save_for_backward(feats, kernel)
        return _gather_matmul_scatter(feats, kernel, kmap)

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: FunctionCtx, grad_out: Tensor
    ) -> tuple[Tensor | None, Tensor | None, None]:
        feats, kernel = ctx.saved_tensors  # type: ignore[attr-defined]
        kmap: KernelMap = ctx.kmap  # type: ignore[attr-defined]
        need_feats, need_kernel = ctx.needs_input_grad[:2]  # type: ignore[attr-defined]
        grad = grad_out.contiguous()
        grad_feats = grad_kernel = None
        rows = _chunk_rows(kernel)
        if need_kernel:
            grad_kernel = kernel.new_zeros(kernel.shape)
        if need_feats:
            grad_feats = _identity_product(grad, kernel.transpose(1, 2), kmap.transposed(), rows)
        for k in range(kmap.volume):
            if k == kmap.identity:
                if grad_kernel is not None:
                    for start in range(0, kmap.n_in, rows):
                        block = slice(start, start + rows)
                        grad_kernel[k].addmm_(feats[block].t(), grad[block])
                continue
            in_idx, out_idx = kmap.in_idx[k], kmap.out_idx[k]
            for start in range(0, in_idx.numel(), rows):
                ins, outs = in_idx[start : start + rows], out_idx[start : start + rows]
                grad_k = grad.index_select(0, outs)  # one gather serves both gradients
                if grad_kernel is not None:
                    grad_kernel[k].addmm_(feats.index_select(0, ins).t(), grad_k)
                if grad_feats is not None:
                    grad_feats.index_add_(0, ins, grad_k.mm(kernel[k].t()))
        return grad_feats, grad_kernel, None


def sparse_conv(feats: Tensor, kernel: Tensor, kmap: KernelMap) -> Tensor:
    """Apply ``kernel`` ``[K, Cin, Cout]`` along ``kmap``; under autocast both run in its dtype."""
    if kernel.dim() == 2:
        kernel = kernel.unsqueeze(0)
    if kernel.shape[0] != kmap.volume:
        raise ValueError(f"kernel has {kernel.shape[0]} offsets, the kernel map {kmap.volume}")
    if feats.shape[0] != kmap.n_in:
        raise ValueError(f"{feats.shape[0]} input rows for a kernel map built on {kmap.n_in}")
    device_type = feats.device.type
    dtype = _autocast_dtype(device_type)
    if dtype is not None:
        with torch.autocast(device_type, enabled=False):
            return SparseConvFunction.apply(feats.to(dtype), kernel.to(dtype), kmap)
    return SparseConvFunction.apply(feats, kernel, kmap)


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The active autocast dtype for ``device_type``, or ``None`` (torch >= 2.1)."""
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
        return None
    except TypeError:  # torch < 2.4: per-device functions
        if device_type == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
        if device_type == "cpu" and torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
        return None


def conv3d(
    input: SparseTensor,
    kernel: Tensor,
    kernel_size: int | Sequence[int] = 3,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
    transposed: bool = False,
) -> SparseTensor:
    """torchsparse-style functional convolution (no ``padding``/``generative``).

    * 1x1x1 at stride 1: ``feats @ kernel`` (kernel ``[Cin, Cout]``), same coordinates.
    * stride 1: submanifold, output coordinates are the input's.
    * stride s > 1: output coordinates ``unique(floor(c / s))`` per batch (reused from the cache if
      that level exists already), tensor stride multiplied by s.
    * transposed: reuses the cached map of the strided conv that produced this level and returns
      exactly the finer level's cached coordinates, in the same order.
    """
    ks = make_triple(kernel_size, "kernel_size")
    st = make_triple(stride, "stride")
    dil = make_triple(dilation, "dilation")
    if ks == (1, 1, 1) and st == (1, 1, 1):
        feats = input.feats.matmul(kernel if kernel.dim() == 2 else kernel[0])
        return input.with_feats(feats if bias is None else feats + bias)
    kmap, out_coords, out_stride = _kernel_map_for(input, ks, st, dil, transposed)
    feats = sparse_conv(input.feats, kernel, kmap)
    if bias is not None:
        feats = feats + bias
    return SparseTensor(feats, out_coords, out_stride, caches=input._caches)


def _kernel_map_for(
    input: SparseTensor, ks: Triple, st: Triple, dil: Triple, transposed: bool
) -> tuple[KernelMap, Tensor, Triple]:
    """Cached or freshly built map, output coordinates and output tensor stride."""
    cache = input._caches
    s = input.stride
    if transposed:
        if any(a % b for a, b in zip(s, st, strict=True)):
            raise ValueError(f"transposed conv with stride {st} on a tensor of stride {s}")
        finer: Triple = tuple(a // b for a, b in zip(s, st, strict=True))  # type: ignore[assignment]
        key = (finer, ks, st, dil)
        kmap = cache.kmaps.get(key)
        if kmap is None and st == (1, 1, 1):
            kmap = cache.kmaps[key] = submanifold_map(input.coords, ks, dil)
        if kmap is None:
            raise ValueError(
                f"transposed conv (kernel {ks}, stride {st}) at tensor stride {s} needs the map of a "
                f"Conv3d(kernel_size={ks}, stride={st}) applied earlier to the stride-{finer} level"
            )
        _check_rows(kmap.n_out, input, key)
        return kmap.transposed(), cache.cmaps[finer], finer
    key = (s, ks, st, dil)
    kmap = cache.kmaps.get(key)
    out_stride: Triple = tuple(a * b for a, b in zip(s, st, strict=True))  # type: ignore[assignment]
    if st == (1, 1, 1):
        out_coords = input.coords
        if kmap is None:
            kmap = cache.kmaps[key] = submanifold_map(input.coords, ks, dil)
    else:
        out_coords = cache.cmaps.get(out_stride)
        if out_coords is None:
            out_coords = cache.cmaps[out_stride] = downsample_coords(input.coords, st)
        if kmap is None:
            kmap = cache.kmaps[key] = strided_map(input.coords, out_coords, ks, st, dil)
    _check_rows(kmap.n_in, input, key)
    return kmap, out_coords, out_stride


def _gather_matmul_scatter(feats: Tensor, kernel: Tensor, kmap: KernelMap) -> Tensor:
    rows = _chunk_rows(kernel)
    out = _identity_product(feats, kernel, kmap, rows)
    for k in range(kmap.volume):
        if k == kmap.identity:
            continue
        in_idx, out_idx = kmap.in_idx[k], kmap.out_idx[k]
        for start in range(0, in_idx.numel(), rows):
            gathered = feats.index_select(0, in_idx[start : start + rows])
            out.index_add_(0, out_idx[start : start + rows], gathered.mm(kernel[k]))
    return out


def _identity_product(feats: Tensor, kernel: Tensor, kmap: KernelMap, rows: int) -> Tensor:
    """``feats @ kernel[identity]`` in row blocks (zeros of the output size without identity)."""
    if kmap.identity is None:
        return feats.new_zeros((kmap.n_out, kernel.shape[2]))
    out = feats.new_empty((kmap.n_out, kernel.shape[2]))
    weight = kernel[kmap.identity]
    for start in range(0, kmap.n_out, rows):
        block = slice(start, start + rows)
        torch.mm(feats[block], weight, out=out[block])
    return out


def _chunk_rows(kernel: Tensor) -> int:
    """Rows per block on CPU: blocks of ~2^19 values stay in cache (measured 1.1-1.6x faster at
    100k voxels); one block per offset on other devices (fewer kernel launches)."""
    if kernel.device.type != "cpu":
        return 2**62
    return max(1024, _CHUNK_VALUES // max(kernel.shape[1], kernel.shape[2]))


def _check_rows(expected: int, input: SparseTensor, key: tuple[Triple, ...]) -> None:
    if expected != input.coords.shape[0]:
        raise ValueError(
            f"cached kernel map {key} was built for {expected} rows but the tensor has "
            f"{input.coords.shape[0]}: tensors sharing a cache must keep their level's coordinates"
        )
