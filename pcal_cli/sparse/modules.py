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


class BatchNorm(_OnFeatures, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over all voxels of the batch."""


class ReLU(_OnFeatures, nn.ReLU):
    """``nn.ReLU`` on features (``inplace=True`` supported)."""


class LeakyReLU(_OnFeatures, nn.LeakyReLU):
    """``nn.LeakyReLU`` on features."""


class Dropout(_OnFeatures, nn.Dropout):
    """``nn.Dropout`` on features."""
