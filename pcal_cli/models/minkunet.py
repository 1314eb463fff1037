"""MinkUNet (MinkUNet42 layout of spvnas / ReDAL): a sparse residual U-Net on voxels."""

from __future__ import annotations

from torch import Tensor

from pcal_cli.models.blocks import SparseUNet
from pcal_cli.sparse import SparseTensor


class MinkUNet(SparseUNet):
    """Sparse residual U-Net; 21.7 M parameters at ``cr = 1`` (4 input channels, 19 classes).

    ``forward(x)`` takes a :class:`SparseTensor` of unique voxels (features ``[V, in_channels]``,
    int coordinates ``[V, 4]`` = batch, x, y, z) and returns ``(logits [V, num_classes],
    features [V, feature_dim])`` in the input's row order; ``features`` are the last decoder's.
    """

    def forward(self, x: SparseTensor) -> tuple[Tensor, Tensor]:
        self.check_input(x)
        x0 = self.stem(x)
        x1 = self.stage1(x0)
        x2 = self.stage2(x1)
        x3 = self.stage3(x2)
        x4 = self.stage4(x3)
        y1 = self.up1(x4, x3)
        y2 = self.up2(y1, x2)
        y3 = self.up3(y2, x1)
        y4 = self.up4(y3, x0)
        return self.classifier(self.head_dropout(y4.F)), y4.F
