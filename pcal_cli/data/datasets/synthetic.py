"""The embedded synthetic dataset: procedural S3DIS-like rooms, no download needed.

``pcal prepare synthetic`` works anywhere: rooms are generated on demand by
:func:`pcal_cli.data.synthetic.synthetic_room`, each from ``(seed, room name)``, so adding scenes
never changes the earlier ones.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from pcal_cli.data.classes import S3DIS_CLASSES, S3DIS_COLORS
from pcal_cli.data.datasets.base import DatasetSpec, RawDataset, RawScene
from pcal_cli.data.synthetic import LAYOUTS, synthetic_room
from pcal_cli.errors import PcalError

SPEC = DatasetSpec(
    name="synthetic",
    classes=S3DIS_CLASSES,
    colors=S3DIS_COLORS,
    indoor=True,
    channels=("rgb",),
    profile="synthetic",
)
MIN_POINTS = 100


def open_synthetic(raw: Path | None = None, seed: int = 0, scenes: int = 6,
                   points: int = 40000, layout: str = "mixed") -> RawDataset:
    """``scenes`` rooms ``room_000``, ``room_001``, ... of exactly ``points`` points each.

    The last ``ceil(scenes / 3)`` rooms form the ``test`` split, the others ``train``
    (6 rooms: 4 train, 2 test). ``layout`` is ``mixed`` (every room furnished from one menu) or
    ``typed`` (offices, lounges, libraries, corridors, storerooms: rooms hold different classes).
    ``raw`` is not used (noted when given).
    """
    _check_int(seed, "--seed", 0)
    _check_int(scenes, "--scenes", 1)
    _check_int(points, "--points", MIN_POINTS)
    if layout not in LAYOUTS:
        raise PcalError(f"synthetic dataset: --layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    n_test = math.ceil(scenes / 3)
    listed = []
    for index in range(scenes):
        name = f"room_{index:03d}"
        split = "test" if index >= scenes - n_test else "train"
        listed.append(RawScene(split=split, name=name,
                               load=functools.partial(synthetic_room, int(seed), int(points), name, layout)))
    notes = [] if raw is None else [f"synthetic rooms are generated; {raw} is not read"]
    return RawDataset(spec=SPEC, scenes=listed, notes=notes)


def _check_int(value: object, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise PcalError(f"synthetic dataset: {name} must be an integer >= {minimum}, got {value!r}")
