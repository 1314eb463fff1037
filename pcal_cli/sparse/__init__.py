"""Sparse voxel tensors and convolutions with torchsparse's (v2.1) API, in plain PyTorch.

    from pcal_cli import sparse
    import pcal_cli.sparse.nn as spnn

    x = sparse.SparseTensor(feats, coords)            # coords [N, 4] int = (batch, x, y, z)
    y = spnn.Conv3d(4, 32, kernel_size=3)(x)            # submanifold
    d = spnn.Conv3d(32, 64, kernel_size=2, stride=2)(y)  # down-sampling, tensor stride 2
    u = spnn.Conv3d(64, 32, kernel_size=2, stride=2, transposed=True)(d)  # back onto y's coords
    z = sparse.cat([u, y])

The built-in engine runs everywhere; an installed torchsparse is used on CUDA (see ``backend``).
"""

from pcal_cli.sparse import nn
from pcal_cli.sparse.backend import resolve_backend, torchsparse_available
from pcal_cli.sparse.collate import sparse_collate, sparse_collate_fn
from pcal_cli.sparse.conv import SparseConvFunction, conv3d, sparse_conv
from pcal_cli.sparse.kernel_map import (
    KernelMap,
    downsample_coords,
    kernel_offsets,
    strided_map,
    submanifold_map,
)
from pcal_cli.sparse.point_voxel import (
    PointTensor,
    initial_voxelize,
    point_to_voxel,
    voxel_to_point,
)
from pcal_cli.sparse.quantize import sparse_quantize
from pcal_cli.sparse.tensor import SparseCache, SparseTensor, cat

__all__ = [
    "KernelMap",
    "PointTensor",
    "SparseCache",
    "SparseConvFunction",
    "SparseTensor",
    "cat",
    "conv3d",
    "downsample_coords",
    "initial_voxelize",
    "kernel_offsets",
    "nn",
    "point_to_voxel",
    "resolve_backend",
    "sparse_collate",
    "sparse_collate_fn",
    "sparse_conv",
    "sparse_quantize",
    "strided_map",
    "submanifold_map",
    "torchsparse_available",
    "voxel_to_point",
]
