"""Layers on :class:`SparseTensor` with torchsparse's names and parameters (``pcal_cli.sparse.nn``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from math import prod

import torch
from torch import nn

from pcal_cli.sparse import torchsparse_adapter
from pcal_cli.sparse.backend import resolve_backend
from pcal_cli.sparse.conv import conv3d
from pcal_cli.sparse.tensor import SparseTensor, make_triple


class Conv3d(nn.Module):
    """Sparse 3D convolution, torchsparse v2.1 compatible (parameter ``kernel``, default no bias).

    ``kernel`` is ``[K, Cin, Cout]`` with ``K = prod(kernel_size)`` in torchsparse's offset order,
    or ``[Cin, Cout]`` for a 1x1x1 stride-1 conv. Odd kernels at stride 1 are submanifold; stride s
    down-samples to ``unique(floor(c / s))``; ``transposed=True`` inverts the matching strided conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        dilation: int | Sequence[int] = 1,
        bias: bool = False,
        transposed: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = make_triple(kernel_size, "kernel_size")
        self.stride = make_triple(stride, "stride")
        self.dilation = make_triple(dilation, "dilation")
        self.transposed = transposed
        self.kernel_volume = prod(self.kernel_size)
        if self.kernel_volume == 1 and self.stride == (1, 1, 1):
            shape: tuple[int, ...] = (in_channels, out_channels)
        else:
            shape = (self.kernel_volume, in_channels, out_channels)
        self.kernel = nn.Parameter(torch.empty(shape))
        self.bias: nn.Parameter | None
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(+-1/sqrt(fan * K)), fan = Cin (Cout if transposed), as torchsparse."""
        fan = self.out_channels if self.transposed else self.in_channels
        bound = 1.0 / math.sqrt(fan * self.kernel_volume)
        nn.init.uniform_(self.kernel, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        if self.stride != (1, 1, 1):
            text += f", stride={self.stride}"
        if self.dilation != (1, 1, 1):
            text += f", dilation={self.dilation}"
        if self.bias is None:
            text += ", bias=False"
        if self.transposed:
            text += ", transposed=True"
        return text

    def forward(self, input: SparseTensor) -> SparseTensor:
        pointwise = self.kernel.dim() == 2
        if not pointwise and resolve_backend(input.feats.device) == "torchsparse":
            return torchsparse_adapter.conv3d(
                input,
                self.kernel,
                self.kernel_size,
                self.bias,
                self.stride,
                self.dilation,
                self.transposed,
                self.training,
            )
        return conv3d(
            input,
            self.kernel,
            self.kernel_size,
            self.bias,
            self.stride,
            self.dilation,
            self.transposed,
        )


class _OnFeatures:
    """Mixin: apply the wrapped torch module to the features only."""

    def forward(self, input: SparseTensor) -> SparseTensor:
        return input.with_feats(super().forward(input.feats))  # type: ignore[misc]


class _SumOverRanks(torch.autograd.Function):
    """``all_reduce`` (sum) that autograd can go through: the gradient of a sum over ranks is the
    sum over ranks of the gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total = tensor.clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total = grad.clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(total)
        return total


def _ranks() -> int:
    """Processes in the running ``torch.distributed`` group (1 when none runs)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose training statistics span every process of a running
    ``torch.distributed`` group (data-parallel training under torchrun), so that N processes
    with a share of the batch each normalise exactly as one process with the whole batch would.

    ``torch.nn.SyncBatchNorm`` does this on GPUs only (torch 2.13 refuses CPU tensors); this one
    works on any device and backend (gloo, NCCL): the mean is the all-reduced sum over the
    all-reduced count, the variance the all-reduced sum of squared deviations from it (two passes,
    as accurate as one process), the gradient flows back through both sums. Running statistics
    are updated with the global mean and unbiased variance, identically on every rank. With no
    group, a group of one, or in eval mode it is plain ``nn.BatchNorm1d``. Every rank must call it
    the same number of times per step (each one is a collective).
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or _ranks() == 1:
            return super().forward(input)
        self._check_input_dim(input)
        x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
        local = torch.cat([x.sum(dim=0), x.new_full((1,), float(x.shape[0]))])
        total = _SumOverRanks.apply(local)
        count = float(total[-1].detach())
        if count < 2:
            raise ValueError(f"expected more than 1 value per channel when training, got {int(count)} in all")
        mean = total[:-1] / count
        centred = x - mean
        var = _SumOverRanks.apply((centred * centred).sum(dim=0)) / count
        out = centred * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            out = out * self.weight + self.bias
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                          else self.momentum)
                self.running_mean.mul_(1.0 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1.0 - factor).add_(var.detach() * (count / (count - 1.0)), alpha=factor)
        return out.to(input.dtype)


class BatchNorm(_OnFeatures, GlobalBatchNorm1d):
    """``nn.BatchNorm1d`` over all voxels of the batch (of every process under torchrun:
    :class:`GlobalBatchNorm1d`)."""


class ReLU(_OnFeatures, nn.ReLU):
    """``nn.ReLU`` on features (``inplace=True`` supported)."""


class LeakyReLU(_OnFeatures, nn.LeakyReLU):
    """``nn.LeakyReLU`` on features."""


class Dropout(_OnFeatures, nn.Dropout):
    """``nn.Dropout`` on features."""
