"""SPVCNN (spvnas): MinkUNet plus a full-resolution point branch fused at three depths."""

from __future__ import annotations

from torch import Tensor, nn

from pcal_cli.models.blocks import SparseUNet, point_mlp
from pcal_cli.sparse import (
    PointTensor,
    SparseTensor,
    initial_voxelize,
    point_to_voxel,
    voxel_to_point,
)

DROPOUT = 0.3


class SPVCNN(SparseUNet):
    """Sparse point-voxel U-Net; 21.8 M parameters at ``cr = 1`` (4 input channels, 19 classes).

    The input voxels are also the points: a :class:`PointTensor` is built on their coordinates
    (as floats) and carried alongside the voxel U-Net. Point features are trilinearly interpolated
    from the voxels after the stem, the encoder and the second and fourth decoder stages, each
    time added to an MLP of the previous point features; voxel features are re-averaged from the
    points before the encoder and before the first and third decoder stages, with dropout (an
    ``nn.Dropout``, active in train mode, which MC-dropout relies on). Returns ``(logits,
    features)`` per input row, like :class:`~pcal_cli.models.minkunet.MinkUNet`.
    """

    def __init__(self, in_channels: int, num_classes: int, cr: float = 1.0, dropout: float = 0.0) -> None:
        super().__init__(in_channels, num_classes, cr, dropout)
        cs = self.widths
        self.point_transforms = nn.ModuleList(
            [point_mlp(cs[0], cs[4]), point_mlp(cs[4], cs[6]), point_mlp(cs[6], cs[8])]
        )
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x: SparseTensor) -> tuple[Tensor, Tensor]:
        self.check_input(x)
        z = PointTensor(x.F, x.C.float())
        x0 = self.stem(initial_voxelize(z))

        z0 = voxel_to_point(x0, z)
        x1 = self.stage1(point_to_voxel(x0, z0))
        x2 = self.stage2(x1)
        x3 = self.stage3(x2)
        x4 = self.stage4(x3)

        z1 = voxel_to_point(x4, z0) + self.point_transforms[0](z0.F)
        y1 = self._point_to_voxel_dropout(x4, z1)
        y1 = self.up1(y1, x3)
        y2 = self.up2(y1, x2)

        z2 = voxel_to_point(y2, z1) + self.point_transforms[1](z1.F)
        y3 = self._point_to_voxel_dropout(y2, z2)
        y3 = self.up3(y3, x1)
        y4 = self.up4(y3, x0)

        z3 = voxel_to_point(y4, z2) + self.point_transforms[2](z2.F)
        return self.classifier(self.head_dropout(z3.F)), z3.F

    def _point_to_voxel_dropout(self, x: SparseTensor, z: PointTensor) -> SparseTensor:
        y = point_to_voxel(x, z)
        return y.with_feats(self.dropout(y.F))
