"""Procedural indoor rooms in the style of S3DIS: the embedded dataset that needs no download.

A room is a list of flat patches (parallelograms) and half-ellipsoid "domes", each with one of
the 13 S3DIS classes and a colour. Points are drawn by area-weighted surface sampling: a
multinomial over patch areas gives each patch its exact share of ``points``, then every point is
placed uniformly on its patch, all in a few vectorised numpy operations. Objects are built in a
Python loop (tens of them); points never are.

Everything is deterministic from ``(seed, name)``: the random generator is
``numpy.random.default_rng([seed, crc32(name)])``.

Two layouts. ``mixed`` (the default) furnishes every room from the same menu, so almost every
room holds almost every class. ``typed`` first draws what the room is (an office, lounge,
library, corridor or storeroom) and furnishes it for that use only, so rooms differ in which
classes they hold, as real scans do: what scene-level tags (WSegPC) need to carry information.

The parts: :mod:`~pcal_cli.data.synthetic.layout` (the floor plan, the kinds of room, what goes
where), :mod:`~pcal_cli.data.synthetic.shapes` (class ids, colours, furniture as patches) and
:mod:`~pcal_cli.data.synthetic.sampling` (the patches and the point sampling); this module puts
them together in :func:`synthetic_room`.
"""

from __future__ import annotations

import zlib

import numpy as np

from pcal_cli.data.scene import Scene
from pcal_cli.data.synthetic.layout import (
    LAYOUTS,
    MIXED,
    ROOM_KINDS,
    Room,
    RoomKind,
    add_floor_clutter,
    add_shell,
    add_tables_and_chairs,
    add_wall_objects,
)
from pcal_cli.data.synthetic.sampling import Surfaces
from pcal_cli.errors import PcalError

__all__ = ["LAYOUTS", "MIN_POINTS", "MIXED", "ROOM_KINDS", "RoomKind", "synthetic_room"]

MIN_POINTS = 1


def synthetic_room(seed: int, points: int, name: str, layout: str = "mixed") -> Scene:
    """A procedural S3DIS-like room with exactly ``points`` points, deterministic in ``(seed, name)``.

    The room spans ``[0, lx] x [0, ly] x [0, height]`` (4-9 m x 3-7 m x 2.6-3.4 m) with floor,
    ceiling and walls, doors and windows set into the walls (door leaves recessed 5 cm with an
    outset frame, window panes recessed 12 cm with their reveals), sometimes a beam and a column,
    a board, bookcases with shelves and books, sometimes a sofa, tables with legs, chairs and
    clutter on tables and the floor. Labels are S3DIS class ids (0..12). ``layout="typed"``
    draws one of :data:`ROOM_KINDS` first and furnishes the room for that use only.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PcalError(f"synthetic seed must be a non-negative integer, got {seed!r}")
    if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < MIN_POINTS:
        raise PcalError(f"synthetic points must be a positive integer, got {points!r}")
    if layout not in LAYOUTS:
        raise PcalError(f"synthetic layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])
    kind = MIXED if layout == "mixed" else ROOM_KINDS[int(rng.integers(len(ROOM_KINDS)))]
    s = Surfaces()
    x0, x1, y0, y1 = kind.size
    lx, ly, h = float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1)), float(rng.uniform(2.6, 3.4))
    room = Room(lx, ly, h)

    add_shell(s, room, rng, kind)
    add_wall_objects(s, room, rng, kind)
    add_tables_and_chairs(s, room, rng, kind)
    add_floor_clutter(s, room, rng, kind)

    xyz, label, rgb = s.sample(int(points), rng)
    return Scene(name=name, xyz=xyz.astype(np.float32), label=label, rgb=rgb)
