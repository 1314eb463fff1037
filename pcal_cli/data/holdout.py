"""A spatial hold-out: one scene cut into a train block and a test block (``--holdout-area``).

Two forms of SPEC:

* a fraction, ``0.25`` or ``25%``: the last quarter of the scene's extent along its longer
  horizontal axis (x or y; x on a tie), the side of the larger coordinates, is test;
* a threshold on a georeferenced coordinate, ``x>650``, ``x<650``, ``y>6277600``, ``y<...``:
  the points where it holds are test. Coordinates are absolute (the scene's offset added), in
  the units of the data (metres).

Everything else is train. :func:`holdout_mask` is a pure function of the coordinates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from pcal_cli.errors import PcalError

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_FRACTION = re.compile(rf"^({_NUMBER})(%?)$")
_THRESHOLD = re.compile(rf"^([xy])\s*([<>])\s*({_NUMBER})$")


@dataclass(frozen=True)
class Holdout:
    """A parsed SPEC: ``axis`` None for a fraction of the longer horizontal extent, else ``x``/``y``
    with ``above`` (``>``) or below (``<``) ``value``."""

    text: str
    value: float
    axis: str | None = None
    above: bool = True


def parse_holdout(text: str) -> Holdout:
    """``0.25``, ``25%``, ``x>650``, ``y<6277600``, ... (see the module docstring)."""
    spec = str(text).strip().lower()
    if match := _FRACTION.match(spec):
        value = float(match.group(1)) / (100.0 if match.group(2) else 1.0)
        if not 0.0 < value < 1.0:
            raise PcalError(f"--holdout-area {text!r}: a fraction must lie strictly between 0 and 1 "
                            "(0.25 or 25% holds out the last quarter of each scene)")
        return Holdout(text=str(text).strip(), value=value)
    if match := _THRESHOLD.match(spec):
        value = float(match.group(3))
        if not np.isfinite(value):
            raise PcalError(f"--holdout-area {text!r}: the threshold must be a finite number")
        return Holdout(text=str(text).strip(), value=value, axis=match.group(1), above=match.group(2) == ">")
    raise PcalError(f"--holdout-area {text!r}: write a fraction of each scene's extent (0.25 or 25%) "
                    "or a threshold on x or y such as 'x>650' or 'y<6277600'")


def holdout_mask(xyz: np.ndarray, offset: np.ndarray, holdout: Holdout) -> np.ndarray:
    """Boolean mask of the points that go to test (``xyz`` relative to ``offset``)."""
    xyz = np.asarray(xyz)
    if holdout.axis is not None:
        axis = "xy".index(holdout.axis)
        coordinate = xyz[:, axis].astype(np.float64) + float(np.asarray(offset, dtype=np.float64)[axis])
        return coordinate > holdout.value if holdout.above else coordinate < holdout.value
    if len(xyz) == 0:
        return np.zeros(0, dtype=bool)
    low = xyz[:, :2].min(axis=0).astype(np.float64)
    extent = xyz[:, :2].max(axis=0).astype(np.float64) - low
    axis = int(np.argmax(extent))  # x on a tie
    cut = low[axis] + (1.0 - holdout.value) * extent[axis]
    return xyz[:, axis].astype(np.float64) > cut
