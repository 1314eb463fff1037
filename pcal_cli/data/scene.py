"""The in-memory scene: per-point arrays of one scan, as stored in ``scenes/<split>/<name>.ply``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pcal_cli.errors import PcalError

IGNORE = -1
NO_REGION = -1


@dataclass
class Scene:
    """One scan. ``xyz`` is float32 relative to ``offset`` (float64, metres).

    ``label`` holds ground truth (``IGNORE`` where unknown); ``region`` the labelling unit of each
    point (``NO_REGION`` before regions are built). ``rgb`` (uint8), ``intensity`` and ``nir``
    (near infrared, float32, as stored) are optional input channels.
    """

    name: str
    xyz: np.ndarray
    label: np.ndarray | None = None
    rgb: np.ndarray | None = None
    intensity: np.ndarray | None = None
    region: np.ndarray | None = None
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))
    nir: np.ndarray | None = None  # last, so positional construction stays as it was

    def __post_init__(self) -> None:
        n = len(self.xyz)
        self.xyz = np.ascontiguousarray(self.xyz, dtype=np.float32).reshape(n, 3)
        self.offset = np.asarray(self.offset, dtype=np.float64).reshape(3)
        self.label = _column(self.label, n, np.int16, IGNORE)
        self.region = _column(self.region, n, np.int32, NO_REGION)
        if self.rgb is not None:
            self.rgb = np.ascontiguousarray(self.rgb, dtype=np.uint8).reshape(n, 3)
        if self.intensity is not None:
            self.intensity = np.ascontiguousarray(self.intensity, dtype=np.float32).reshape(n)
        if self.nir is not None:
            self.nir = np.ascontiguousarray(self.nir, dtype=np.float32).reshape(n)

    def __len__(self) -> int:
        return len(self.xyz)

    def subset(self, index: np.ndarray) -> "Scene":
        """The scene restricted to ``index`` (a boolean mask or integer indices)."""
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return Scene(
            name=self.name,
            xyz=self.xyz[index],
            label=self.label[index],
            rgb=pick(self.rgb),
            intensity=pick(self.intensity),
            region=self.region[index],
            offset=self.offset,
            nir=pick(self.nir),
        )


def _column(values: np.ndarray | None, n: int, dtype: type, fill: int) -> np.ndarray:
    if values is None:
        return np.full(n, fill, dtype=dtype)
    values = np.asarray(values)
    if values.shape != (n,):
        raise PcalError(f"per-point array has shape {values.shape}, expected ({n},)")
    return np.ascontiguousarray(values, dtype=dtype)


def split_offset(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split absolute coordinates (float64) into an integer-metre offset and float32 remainders.

    Georeferenced scans (LAS, UTM coordinates of millions of metres) lose centimetres in float32;
    the offset keeps them exact.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    if len(xyz) == 0:
        return xyz.astype(np.float32).reshape(0, 3), np.zeros(3)
    offset = np.floor(xyz.min(axis=0))
    return (xyz - offset).astype(np.float32), offset


def drop_invalid_points(xyz: np.ndarray) -> np.ndarray:
    """Boolean mask of points whose coordinates are all finite (NaN/inf points are dropped)."""
    return np.isfinite(np.asarray(xyz)).all(axis=1)
