"""Building blocks of the sparse U-Nets (MinkUNet, SPVCNN), on ``pcal_cli.sparse``.

Module and attribute names (``net``, ``downsample``, ``stage1``, ``up1``, ``point_transforms`` ...)
follow spvnas, so the models' ``state_dict`` keys are spvnas's.
"""

from __future__ import annotations

from torch import nn

from pcal_cli import sparse
from pcal_cli.sparse import SparseTensor
from pcal_cli.sparse import nn as spnn
from pcal_cli.sparse.modules import GlobalBatchNorm1d

#: Channel widths of stem, 4 encoder stages and 4 decoder stages at ``cr = 1``.
BASE_WIDTHS = (32, 32, 64, 128, 256, 256, 128, 96, 96)


def scaled_widths(cr: float) -> list[int]:
    """``BASE_WIDTHS`` times the channel ratio, truncated with ``int`` as spvnas does."""
    if cr <= 0:
        raise ValueError(f"channel ratio cr must be positive, got {cr}")
    widths = [int(cr * w) for w in BASE_WIDTHS]
    if min(widths) < 1:
        raise ValueError(f"channel ratio cr={cr} leaves a layer without channels: {widths}")
    return widths


class ConvBNReLU(nn.Module):
    """Sparse convolution -> BatchNorm -> ReLU (down-sampling when ``stride > 1``)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            spnn.Conv3d(in_channels, out_channels, kernel_size, stride=stride),
            spnn.BatchNorm(out_channels),
            spnn.ReLU(True),
        )

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self.net(x)


class DeconvBNReLU(nn.Module):
    """Transposed sparse convolution (back onto the finer level's voxels) -> BatchNorm -> ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 2, stride: int = 2
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            spnn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, transposed=True),
            spnn.BatchNorm(out_channels),
            spnn.ReLU(True),
        )

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self.net(x)


class ResidualBlock(nn.Module):
    """conv3-BN-ReLU-conv3-BN plus a shortcut (identity, or conv1 + BN when widths differ), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            spnn.Conv3d(in_channels, out_channels, kernel_size),
            spnn.BatchNorm(out_channels),
            spnn.ReLU(True),
            spnn.Conv3d(out_channels, out_channels, kernel_size),
            spnn.BatchNorm(out_channels),
        )
        if in_channels == out_channels:
            self.downsample: nn.Module = nn.Identity()
        else:
            self.downsample = nn.Sequential(
                spnn.Conv3d(in_channels, out_channels, kernel_size=1),
                spnn.BatchNorm(out_channels),
            )
        self.relu = spnn.ReLU(True)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self.relu(self.net(x) + self.downsample(x))


def encoder_stage(in_channels: int, out_channels: int) -> nn.Sequential:
    """Kernel-2 stride-2 down-sampling (width kept), then two residual blocks to ``out_channels``."""
    return nn.Sequential(
        ConvBNReLU(in_channels, in_channels, kernel_size=2, stride=2),
        ResidualBlock(in_channels, out_channels),
        ResidualBlock(out_channels, out_channels),
    )


class DecoderStage(nn.ModuleList):
    """Transposed up-sampling, concatenation with the skip of that level, two residual blocks.

    A ``ModuleList`` ``[up-sampling, Sequential(block, block)]`` as in spvnas.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__(
            [
                DeconvBNReLU(in_channels, out_channels),
                nn.Sequential(
                    ResidualBlock(out_channels + skip_channels, out_channels),
                    ResidualBlock(out_channels, out_channels),
                ),
            ]
        )

    def forward(self, x: SparseTensor, skip: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return self[1](sparse.cat([self[0](x), skip]))


def point_mlp(in_channels: int, out_channels: int) -> nn.Sequential:
    """SPVCNN point transform: Linear -> BatchNorm1d -> ReLU on point features ``[N, C]``."""
    return nn.Sequential(
        nn.Linear(in_channels, out_channels),
        GlobalBatchNorm1d(out_channels),  # nn.BatchNorm1d, synchronised over torchrun's processes
        nn.ReLU(True),
    )


class SparseUNet(nn.Module):
    """Stem, four encoder stages and four decoder stages shared by MinkUNet and SPVCNN.

    Subclasses write ``forward``; :attr:`feature_dim` is the width of the last decoder stage.
    ``dropout > 0`` puts an ``nn.Dropout`` (``head_dropout``, no weights, so checkpoints keep their
    keys) on the classifier's input, trained with the network: MC-dropout's passes then sample the
    dropout the network learnt with, not one added at test time only.
    """

    def __init__(self, in_channels: int, num_classes: int, cr: float = 1.0, dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.head_dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        cs = scaled_widths(cr)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.cr = cr
        self.widths = cs
        self.feature_dim = cs[8]
        self.stem = nn.Sequential(
            spnn.Conv3d(in_channels, cs[0], kernel_size=3),
            spnn.BatchNorm(cs[0]),
            spnn.ReLU(True),
            spnn.Conv3d(cs[0], cs[0], kernel_size=3),
            spnn.BatchNorm(cs[0]),
            spnn.ReLU(True),
        )
        self.stage1 = encoder_stage(cs[0], cs[1])
        self.stage2 = encoder_stage(cs[1], cs[2])
        self.stage3 = encoder_stage(cs[2], cs[3])
        self.stage4 = encoder_stage(cs[3], cs[4])
        self.up1 = DecoderStage(cs[4], cs[3], cs[5])
        self.up2 = DecoderStage(cs[5], cs[2], cs[6])
        self.up3 = DecoderStage(cs[6], cs[1], cs[7])
        self.up4 = DecoderStage(cs[7], cs[0], cs[8])
        self.classifier = nn.Sequential(nn.Linear(cs[8], num_classes))

    def check_input(self, x: SparseTensor) -> None:
        """Raise ``ValueError`` unless ``x`` has ``in_channels`` features and ``[V, 4]`` coordinates."""
        if x.F.dim() != 2 or x.F.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects features [V, {self.in_channels}], got {tuple(x.F.shape)}"
            )
        if x.C.dim() != 2 or x.C.shape[1] != 4:
            raise ValueError(f"coordinates must be [V, 4] (batch, x, y, z), got {tuple(x.C.shape)}")

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, num_classes={self.num_classes}, cr={self.cr}"
