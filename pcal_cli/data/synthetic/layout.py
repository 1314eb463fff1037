"""Where things go in a synthetic room: the floor plan, the kinds of room and the furnishing passes.

:class:`Room` keeps the floor plan's bookkeeping (a :class:`~pcal_cli.data.synthetic.shapes.Frame`
per wall, the wall intervals and floor rectangles already used, the openings cut into each
wall). :class:`RoomKind` says how a room is furnished; ``mixed`` uses :data:`MIXED` for every
room, ``typed`` draws one of :data:`ROOM_KINDS`. The passes, in the order
:func:`~pcal_cli.data.synthetic.synthetic_room` runs them: :func:`add_shell` (floor, ceiling,
beam, column, doors, windows, the walls around them), :func:`add_wall_objects` (board,
bookcases, sofa), :func:`add_tables_and_chairs` and :func:`add_floor_clutter`; each draws from
the room's generator in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcal_cli.data.synthetic.sampling import Surfaces
from pcal_cli.data.synthetic.shapes import (
    BEAM,
    BOARD,
    CEILING,
    CHAIR_HALF,
    COLUMN,
    DOOR,
    FLOOR,
    WALL,
    WINDOW,
    Frame,
    bookcase,
    chair,
    clutter_item,
    sofa,
    table,
    tint,
)


class Room:
    """Floor-plan bookkeeping: wall frames, used intervals along each wall, used floor area."""

    def __init__(self, lx: float, ly: float, height: float) -> None:
        self.lx, self.ly, self.height = lx, ly, height
        # walls: y=0, y=ly, x=0, x=lx; each frame's d axis points into the room
        self.walls = [Frame((0, 0), 0), Frame((lx, ly), 2), Frame((0, ly), 3), Frame((lx, 0), 1)]
        self.lengths = [lx, lx, ly, ly]
        self.wall_used: list[list[tuple[float, float]]] = [[] for _ in range(4)]
        self.openings: list[list[tuple[float, float, float, float]]] = [[] for _ in range(4)]
        self.floor_used: list[tuple[float, float, float, float]] = []

    def wall_free(self, wall: int, a0: float, a1: float, margin: float = 0.15) -> bool:
        if a0 < margin or a1 > self.lengths[wall] - margin:
            return False
        return all(a1 + margin <= u0 or a0 - margin >= u1 for u0, u1 in self.wall_used[wall])

    def floor_free(self, rect: tuple[float, float, float, float], margin: float = 0.0) -> bool:
        x0, y0, x1, y1 = rect
        if x0 < -1e-6 or y0 < -1e-6 or x1 > self.lx + 1e-6 or y1 > self.ly + 1e-6:
            return False
        return all(x1 + margin <= u0 or x0 - margin >= u2 or y1 + margin <= u1 or y0 - margin >= u3
                   for u0, u1, u2, u3 in self.floor_used)

    def place_on_wall(self, rng: np.random.Generator, width: float,
                      tries: int = 30) -> tuple[int, float] | None:
        """A random wall and start position where ``width`` metres of wall are still free."""
        for _ in range(tries):
            wall = int(rng.integers(4))
            slack = self.lengths[wall] - width - 0.3
            if slack <= 0:
                continue
            a0 = float(rng.uniform(0.15, 0.15 + slack))
            if self.wall_free(wall, a0, a0 + width):
                return wall, a0
        return None


@dataclass(frozen=True)
class RoomKind:
    """How a room is furnished: a probability or an ``[lo, hi)`` count for each kind of object."""

    name: str
    board: float = 0.9
    bookcases: tuple[int, int] = (1, 3)
    sofa: float = 0.55
    tables: tuple[int, int] = (1, 4)
    loose_chairs: tuple[int, int] = (0, 3)
    floor_clutter: tuple[int, int] = (2, 7)
    windows: tuple[int, int] = (1, 4)
    doors: tuple[int, int] = (1, 3)
    size: tuple[float, float, float, float] = (4, 9, 3, 7)  # lx range, ly range in metres


MIXED = RoomKind("mixed")
ROOM_KINDS = (
    RoomKind("office", bookcases=(0, 2), sofa=0.0),
    RoomKind("lounge", board=0.0, sofa=1.0, tables=(0, 1), loose_chairs=(1, 4), floor_clutter=(0, 3),
             doors=(0, 2)),
    RoomKind("library", board=0.0, bookcases=(2, 5), sofa=0.0, tables=(1, 3), loose_chairs=(0, 1),
             floor_clutter=(0, 1), windows=(1, 3)),
    RoomKind("corridor", board=0.0, bookcases=(0, 1), sofa=0.0, tables=(0, 1), loose_chairs=(0, 1),
             floor_clutter=(0, 1), windows=(0, 1), doors=(0, 3), size=(6, 12, 1.8, 2.6)),
    RoomKind("storeroom", board=0.0, bookcases=(1, 4), sofa=0.0, tables=(0, 1), loose_chairs=(0, 1),
             floor_clutter=(6, 12), windows=(0, 1), doors=(0, 2), size=(3, 6, 2.5, 5)),
)
LAYOUTS = ("mixed", "typed")


def add_shell(s: Surfaces, room: Room, rng: np.random.Generator, kind: RoomKind) -> None:
    """Floor, ceiling (split around a beam), beam, column, doors, windows and the walls around them."""
    lx, ly, h = room.lx, room.ly, room.height
    s.quad((0, 0, 0), (lx, 0, 0), (0, ly, 0), FLOOR, tint(rng, FLOOR, 0.04))

    ceiling = tint(rng, CEILING, 0.03)
    if rng.random() < 0.5:  # a beam across the shorter span, hiding the ceiling above it
        width, depth = float(rng.uniform(0.3, 0.5)), float(rng.uniform(0.25, 0.45))
        along_x = lx <= ly
        span = ly if along_x else lx
        c0 = float(rng.uniform(0.3 * span, 0.7 * span - width))
        beam = tint(rng, BEAM, 0.03)
        if along_x:  # beam runs along x at y in [c0, c0 + width]
            s.box((0, c0, h - depth), (lx, c0 + width, h), BEAM, beam, skip=((2, 1), (0, 0), (0, 1)))
            s.quad((0, 0, h), (lx, 0, 0), (0, c0, 0), CEILING, ceiling)
            s.quad((0, c0 + width, h), (lx, 0, 0), (0, ly - c0 - width, 0), CEILING, ceiling)
        else:
            s.box((c0, 0, h - depth), (c0 + width, ly, h), BEAM, beam, skip=((2, 1), (1, 0), (1, 1)))
            s.quad((0, 0, h), (c0, 0, 0), (0, ly, 0), CEILING, ceiling)
            s.quad((c0 + width, 0, h), (lx - c0 - width, 0, 0), (0, ly, 0), CEILING, ceiling)
    else:
        s.quad((0, 0, h), (lx, 0, 0), (0, ly, 0), CEILING, ceiling)

    if rng.random() < 0.6:  # a column standing against a wall
        size = float(rng.uniform(0.3, 0.6))
        spot = room.place_on_wall(rng, size)
        if spot is not None:
            wall, a0 = spot
            room.walls[wall].box(s, a0, a0 + size, 0, size, 0, h, COLUMN, tint(rng, COLUMN, 0.04),
                                 skip=("back", "top", "bottom"))
            room.wall_used[wall].append((a0, a0 + size))
            room.floor_used.append(room.walls[wall].rect(a0, a0 + size, 0, size))

    for _ in range(int(rng.integers(*kind.doors))):  # doors: recessed leaf, outset frame, clear floor
        width, top = float(rng.uniform(0.85, 1.0)), float(rng.uniform(2.0, min(2.2, h - 0.2)))
        spot = room.place_on_wall(rng, width)
        if spot is None:
            continue
        wall, a0 = spot
        frame, color = room.walls[wall], tint(rng, DOOR)
        a1, recess, trim = a0 + width, 0.05, 0.06
        frame.quad(s, a0, a1, -recess, 0, top, DOOR, color)
        frame.box(s, a0 - trim, a0, 0, 0.02, 0, top + trim, DOOR, color, skip=("back", "bottom"))
        frame.box(s, a1, a1 + trim, 0, 0.02, 0, top + trim, DOOR, color, skip=("back", "bottom"))
        frame.box(s, a0, a1, 0, 0.02, top, top + trim, DOOR, color, skip=("back",))
        _reveals(s, frame, a0, a1, 0, top, recess, DOOR, color, sill=False)
        room.wall_used[wall].append((a0 - trim, a1 + trim))
        room.openings[wall].append((a0, a1, 0.0, top))
        room.floor_used.append(frame.rect(a0 - 0.1, a1 + 0.1, 0, 0.9))

    for _ in range(int(rng.integers(*kind.windows))):  # windows: recessed pane with reveals
        width = float(rng.uniform(1.0, 2.0))
        bottom, top = float(rng.uniform(0.8, 1.0)), float(rng.uniform(2.0, min(2.5, h - 0.25)))
        spot = room.place_on_wall(rng, width)
        if spot is None:
            continue
        wall, a0 = spot
        frame, color = room.walls[wall], tint(rng, WINDOW, 0.04)
        frame.quad(s, a0, a0 + width, -0.12, bottom, top, WINDOW, color)
        _reveals(s, frame, a0, a0 + width, bottom, top, 0.12, WINDOW, color * 0.9, sill=True)
        if width > 1.4:  # a mullion in the middle
            mid = a0 + width / 2
            frame.box(s, mid - 0.03, mid + 0.03, -0.12, -0.07, bottom, top, WINDOW, color * 0.85,
                      skip=("back",))
        room.wall_used[wall].append((a0, a0 + width))
        room.openings[wall].append((a0, a0 + width, bottom, top))

    wall_color = tint(rng, WALL, 0.03)
    for wall in range(4):
        _wall_with_openings(s, room, wall, wall_color * rng.normal(1.0, 0.015))


def _reveals(s: Surfaces, frame: Frame, a0: float, a1: float, z0: float, z1: float, depth: float,
             label: int, color: np.ndarray, sill: bool) -> None:
    """The side, top (and bottom) faces of an opening cut ``depth`` metres into the wall."""
    for a in (a0, a1):
        s.quad(frame.point(a, -depth, z0), frame.vector(0, depth, 0), (0, 0, z1 - z0), label, color)
    s.quad(frame.point(a0, -depth, z1), frame.vector(a1 - a0, 0, 0), frame.vector(0, depth, 0), label, color)
    if sill:
        s.quad(frame.point(a0, -depth, z0), frame.vector(a1 - a0, 0, 0), frame.vector(0, depth, 0),
               label, color)


def _wall_with_openings(s: Surfaces, room: Room, wall: int, color: np.ndarray) -> None:
    """One wall as rectangles: full-height strips between openings, pieces above and below them."""
    frame, length, h = room.walls[wall], room.lengths[wall], room.height
    cursor = 0.0
    for a0, a1, z0, z1 in sorted(room.openings[wall]):
        frame.quad(s, cursor, a0, 0, 0, h, WALL, color)
        if z0 > 0:
            frame.quad(s, a0, a1, 0, 0, z0, WALL, color)
        frame.quad(s, a0, a1, 0, z1, h, WALL, color)
        cursor = a1
    frame.quad(s, cursor, length, 0, 0, h, WALL, color)


def add_wall_objects(s: Surfaces, room: Room, rng: np.random.Generator, kind: RoomKind) -> None:
    """A board, bookcases (with shelves and books) and sometimes a sofa, all against walls."""
    h = room.height
    if rng.random() < kind.board:
        width = float(rng.uniform(1.2, 2.8))
        spot = room.place_on_wall(rng, width)
        if spot is None:
            width = 1.2
            spot = room.place_on_wall(rng, width)
        if spot is not None:
            wall, a0 = spot
            z0, height = float(rng.uniform(0.85, 1.0)), float(rng.uniform(0.9, 1.2))
            room.walls[wall].box(s, a0, a0 + width, 0, 0.02, z0, z0 + height, BOARD,
                                 tint(rng, BOARD, 0.03), skip=("back",))
            room.wall_used[wall].append((a0, a0 + width))

    for _ in range(int(rng.integers(*kind.bookcases))):
        width, depth = float(rng.uniform(0.8, 1.2)), float(rng.uniform(0.3, 0.4))
        height = float(rng.uniform(1.8, min(2.2, h - 0.3)))
        spot = room.place_on_wall(rng, width)
        if spot is None:
            continue
        wall, a0 = spot
        rect = room.walls[wall].rect(a0, a0 + width, 0, depth)
        if not room.floor_free(rect):
            continue
        bookcase(s, room.walls[wall], a0, width, depth, height, rng)
        room.wall_used[wall].append((a0, a0 + width))
        room.floor_used.append(rect)

    if rng.random() < kind.sofa:
        length, depth = float(rng.uniform(1.6, 2.2)), float(rng.uniform(0.8, 0.9))
        spot = room.place_on_wall(rng, length)
        if spot is not None:
            wall, a0 = spot
            rect = room.walls[wall].rect(a0, a0 + length, 0, depth)
            if room.floor_free(rect):
                sofa(s, room.walls[wall], a0, length, depth, rng)
                room.wall_used[wall].append((a0, a0 + length))
                room.floor_used.append(rect)


def add_tables_and_chairs(s: Surfaces, room: Room, rng: np.random.Generator, kind: RoomKind) -> None:
    """Free-standing tables with legs, chairs around them facing the table, clutter on top."""
    for _ in range(int(rng.integers(*kind.tables))):
        length, width = float(rng.uniform(1.2, 2.0)), float(rng.uniform(0.6, 1.0))
        if rng.random() < 0.5:
            length, width = width, length
        for _ in range(40):
            x0 = float(rng.uniform(0.2, room.lx - length - 0.2)) if room.lx > length + 0.4 else -1
            y0 = float(rng.uniform(0.2, room.ly - width - 0.2)) if room.ly > width + 0.4 else -1
            rect = (x0, y0, x0 + length, y0 + width)
            if x0 >= 0 and y0 >= 0 and room.floor_free(rect, margin=0.3):
                break
        else:
            continue
        top_z = table(s, rng, x0, y0, length, width)
        room.floor_used.append(rect)
        for _ in range(int(rng.integers(1, 5))):
            clutter_item(s, rng, (x0 + 0.1, y0 + 0.1, x0 + length - 0.1, y0 + width - 0.1), top_z,
                         small=True)
        # chairs on both long sides, facing the table
        long_x = length >= width
        for _ in range(int(rng.integers(1, 5))):
            side = int(rng.integers(2))
            if long_x:
                cx = float(rng.uniform(x0 + 0.3, x0 + length - 0.3))
                cy = y0 - 0.3 if side == 0 else y0 + width + 0.3
                facing = 0 if side == 0 else 2  # quarter turns of the chair's frame
            else:
                cy = float(rng.uniform(y0 + 0.3, y0 + width - 0.3))
                cx = x0 - 0.3 if side == 0 else x0 + length + 0.3
                facing = 3 if side == 0 else 1
            _try_chair(s, room, rng, cx, cy, facing)

    for _ in range(int(rng.integers(*kind.loose_chairs))):  # a few chairs elsewhere
        _try_chair(s, room, rng, float(rng.uniform(0.5, room.lx - 0.5)),
                   float(rng.uniform(0.5, room.ly - 0.5)), int(rng.integers(4)))


def _try_chair(s: Surfaces, room: Room, rng: np.random.Generator, cx: float, cy: float,
               quarter_turns: int) -> None:
    """A chair centred at (cx, cy) facing local +d (0 quarter turns: +y, 1: -x, 2: -y, 3: +x),
    where its footprint finds free floor."""
    f = Frame((cx, cy), quarter_turns)
    rect = f.rect(-CHAIR_HALF, CHAIR_HALF, -CHAIR_HALF, CHAIR_HALF)
    if not room.floor_free(rect):
        return
    chair(s, f, rng)
    room.floor_used.append(rect)


def add_floor_clutter(s: Surfaces, room: Room, rng: np.random.Generator, kind: RoomKind) -> None:
    """Boxes and blobs standing on the floor where there is room (bins, bags, boxes)."""
    for _ in range(int(rng.integers(*kind.floor_clutter))):
        size = float(rng.uniform(0.25, 0.6))
        for _ in range(20):
            x0 = float(rng.uniform(0.1, room.lx - size - 0.1))
            y0 = float(rng.uniform(0.1, room.ly - size - 0.1))
            rect = (x0, y0, x0 + size, y0 + size)
            if room.floor_free(rect, margin=0.05):
                clutter_item(s, rng, rect, 0.0, small=False)
                room.floor_used.append(rect)
                break
