"""torchsparse.nn-style namespace: ``import pcal_cli.sparse.nn as spnn``."""

from pcal_cli.sparse.modules import BatchNorm, Conv3d, Dropout, LeakyReLU, ReLU

__all__ = ["BatchNorm", "Conv3d", "Dropout", "LeakyReLU", "ReLU"]
