"""pcal: active learning for 3D point cloud semantic segmentation."""

__version__ = "0.1.0"
