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
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from pcal_cli.data.classes import S3DIS_CLASSES
from pcal_cli.data.scene import Scene
from pcal_cli.errors import PcalError

(CEILING, FLOOR, WALL, BEAM, COLUMN, WINDOW, DOOR,
 TABLE, CHAIR, SOFA, BOOKCASE, BOARD, CLUTTER) = range(len(S3DIS_CLASSES))

POSITION_NOISE = 0.003  # metres, standard deviation of the simulated sensor noise
COLOR_NOISE = 4.0  # per-point colour noise, standard deviation on the 0..255 scale
MIN_POINTS = 1

# Plausible base colours (not the S3DIS display colours); one is drawn per object.
_PALETTE: dict[int, tuple[tuple[int, int, int], ...]] = {
    CEILING: ((228, 228, 222), (215, 215, 212)),
    FLOOR: ((122, 108, 94), (158, 148, 128), (92, 92, 98), (140, 120, 100)),
    WALL: ((204, 198, 186), (218, 212, 200), (190, 192, 198), (200, 190, 170)),
    BEAM: ((200, 200, 196),),
    COLUMN: ((182, 176, 166), (170, 170, 176)),
    WINDOW: ((168, 198, 226), (150, 185, 215), (185, 210, 230)),
    DOOR: ((140, 95, 60), (110, 75, 50), (160, 122, 82), (120, 120, 128)),
    TABLE: ((150, 110, 70), (200, 190, 170), (92, 72, 52), (170, 170, 165)),
    CHAIR: ((42, 42, 48), (60, 72, 124), (124, 42, 42), (76, 76, 76), (40, 90, 70)),
    SOFA: ((112, 62, 62), (62, 82, 112), (92, 92, 80), (130, 110, 80)),
    BOOKCASE: ((132, 100, 70), (172, 142, 102), (90, 70, 55)),
    BOARD: ((236, 236, 236), (52, 92, 62), (225, 228, 232)),
}


class _Surfaces:
    """Accumulates labelled patches and samples points on them by area."""

    def __init__(self) -> None:
        self.quads: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]] = []
        self.domes: list[tuple[np.ndarray, np.ndarray, int, np.ndarray]] = []

    def quad(self, origin, u, v, label: int, rgb: np.ndarray) -> None:
        """The parallelogram ``origin + s*u + t*v`` for ``s, t`` in [0, 1]."""
        self.quads.append((np.asarray(origin, float), np.asarray(u, float), np.asarray(v, float),
                           label, rgb))

    def box(self, lo, hi, label: int, rgb: np.ndarray, skip: tuple[tuple[int, int], ...] = ()) -> None:
        """The faces of an axis-aligned box; ``skip`` lists hidden faces as ``(axis, 0 low | 1 high)``."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        for axis in range(3):
            b, c = (axis + 1) % 3, (axis + 2) % 3
            for side in (0, 1):
                if (axis, side) in skip:
                    continue
                origin = lo.copy()
                origin[axis] = hi[axis] if side else lo[axis]
                u, v = np.zeros(3), np.zeros(3)
                u[b], v[c] = hi[b] - lo[b], hi[c] - lo[c]
                self.quad(origin, u, v, label, rgb)

    def dome(self, center, radii, label: int, rgb: np.ndarray) -> None:
        """The upper half of an axis-aligned ellipsoid (a blob resting on ``center``'s z)."""
        self.domes.append((np.asarray(center, float), np.asarray(radii, float), label, rgb))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` points (float64 xyz, int16 labels, uint8 rgb), area-weighted over all patches."""
        q_origin, q_u, q_v = (np.array([q[i] for q in self.quads]).reshape(-1, 3) for i in range(3))
        q_normal = np.cross(q_u, q_v)
        q_area = np.linalg.norm(q_normal, axis=1)
        q_normal /= np.maximum(q_area, 1e-12)[:, None]
        d_center = np.array([d[0] for d in self.domes]).reshape(-1, 3)
        d_radii = np.array([d[1] for d in self.domes]).reshape(-1, 3)
        # Knud Thomsen's approximation of an ellipsoid's area, halved for the upper half.
        p = 1.6075
        a, b, c = (d_radii ** p).T
        d_area = 2 * np.pi * ((a * b + a * c + b * c) / 3) ** (1 / p)

        labels = np.array([q[3] for q in self.quads] + [d[2] for d in self.domes], dtype=np.int16)
        colors = np.array([q[4] for q in self.quads] + [d[3] for d in self.domes], dtype=float)
        area = np.concatenate([q_area, d_area])
        counts = rng.multinomial(n, area / area.sum())
        nq = len(self.quads)
        patch = np.repeat(np.arange(len(area)), counts)
        in_quad = patch < nq

        xyz = np.empty((n, 3))
        normal = np.empty((n, 3))
        qi = patch[in_quad]
        st = rng.random((len(qi), 2))
        xyz[in_quad] = q_origin[qi] + st[:, :1] * q_u[qi] + st[:, 1:] * q_v[qi]
        normal[in_quad] = q_normal[qi]
        di = patch[~in_quad] - nq
        g = rng.standard_normal((len(di), 3))
        g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        g[:, 2] = np.abs(g[:, 2])
        xyz[~in_quad] = d_center[di] + d_radii[di] * g
        normal[~in_quad] = g

        # Simple shading: lit from above and slightly from +x, so faces of one object differ a bit.
        shade = 0.80 + 0.15 * np.abs(normal[:, 2]) + 0.05 * normal[:, 0]
        rgb = colors[patch] * shade[:, None] + rng.normal(0.0, COLOR_NOISE, (n, 3))
        xyz += rng.normal(0.0, POSITION_NOISE, (n, 3))
        order = rng.permutation(n)
        rgb = np.clip(np.rint(rgb[order]), 0, 255).astype(np.uint8)
        return xyz[order], labels[patch[order]], rgb


class _Frame:
    """A 2D frame on the floor plan: ``world = origin + R(quarter_turns) @ (a, d)``, z unchanged.

    For a wall, ``a`` runs along the wall and ``d`` points into the room.
    """

    def __init__(self, origin: tuple[float, float], quarter_turns: int) -> None:
        self.origin = np.asarray(origin, float)
        k = quarter_turns % 4
        cos, sin = ((1, 0), (0, 1), (-1, 0), (0, -1))[k]
        self.rot = np.array([[cos, -sin], [sin, cos]], float)

    def point(self, a: float, d: float, z: float) -> np.ndarray:
        x, y = self.origin + self.rot @ (a, d)
        return np.array([x, y, z])

    def vector(self, a: float, d: float, z: float) -> np.ndarray:
        x, y = self.rot @ (a, d)
        return np.array([x, y, z])

    def rect(self, a0: float, a1: float, d0: float, d1: float) -> tuple[float, float, float, float]:
        """World footprint ``(x0, y0, x1, y1)`` of a local rectangle."""
        corners = np.array([self.point(a, d, 0)[:2] for a in (a0, a1) for d in (d0, d1)])
        (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    def box(self, s: _Surfaces, a0, a1, d0, d1, z0, z1, label: int, rgb: np.ndarray,
            skip: tuple[str, ...] = ()) -> None:
        """A box given in local coordinates; ``skip`` names hidden faces: back (d0), front (d1),
        left (a0), right (a1), bottom, top."""
        x0, y0, x1, y1 = self.rect(a0, a1, d0, d1)
        local = {"left": (-1, 0), "right": (1, 0), "back": (0, -1), "front": (0, 1)}
        world_skip = []
        for name in skip:
            if name == "bottom":
                world_skip.append((2, 0))
            elif name == "top":
                world_skip.append((2, 1))
            else:
                dx, dy = self.rot @ local[name]
                axis = 0 if abs(dx) > 0.5 else 1
                world_skip.append((axis, int((dx if axis == 0 else dy) > 0)))
        s.box((x0, y0, z0), (x1, y1, z1), label, rgb, tuple(world_skip))

    def quad(self, s: _Surfaces, a0, a1, d, z0, z1, label: int, rgb: np.ndarray) -> None:
        """A vertical rectangle parallel to the frame's ``a`` axis at depth ``d``."""
        s.quad(self.point(a0, d, z0), self.vector(a1 - a0, 0, 0), (0, 0, z1 - z0), label, rgb)


class _Room:
    """Floor-plan bookkeeping: wall frames, used intervals along each wall, used floor area."""

    def __init__(self, lx: float, ly: float, height: float) -> None:
        self.lx, self.ly, self.height = lx, ly, height
        # walls: y=0, y=ly, x=0, x=lx; each frame's d axis points into the room
        self.walls = [_Frame((0, 0), 0), _Frame((lx, ly), 2), _Frame((0, ly), 3), _Frame((lx, 0), 1)]
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


def _tint(rng: np.random.Generator, label: int, spread: float = 0.07) -> np.ndarray:
    """One object's colour: a palette entry with brightness and per-channel variation."""
    options = _PALETTE[label]
    base = np.asarray(options[int(rng.integers(len(options)))], float)
    return np.clip(base * rng.normal(1.0, spread) + rng.normal(0.0, 5.0, 3), 0, 255)


def _random_color(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(20, 235, 3)


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
    s = _Surfaces()
    x0, x1, y0, y1 = kind.size
    lx, ly, h = float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1)), float(rng.uniform(2.6, 3.4))
    room = _Room(lx, ly, h)

    _add_shell(s, room, rng, kind)
    _add_wall_objects(s, room, rng, kind)
    _add_tables_and_chairs(s, room, rng, kind)
    _add_floor_clutter(s, room, rng, kind)

    xyz, label, rgb = s.sample(int(points), rng)
    return Scene(name=name, xyz=xyz.astype(np.float32), label=label, rgb=rgb)


def _add_shell(s: _Surfaces, room: _Room, rng: np.random.Generator, kind: RoomKind) -> None:
    """Floor, ceiling (split around a beam), beam, column, doors, windows and the walls around them."""
    lx, ly, h = room.lx, room.ly, room.height
    s.quad((0, 0, 0), (lx, 0, 0), (0, ly, 0), FLOOR, _tint(rng, FLOOR, 0.04))

    ceiling = _tint(rng, CEILING, 0.03)
    if rng.random() < 0.5:  # a beam across the shorter span, hiding the ceiling above it
        width, depth = float(rng.uniform(0.3, 0.5)), float(rng.uniform(0.25, 0.45))
        along_x = lx <= ly
        span = ly if along_x else lx
        c0 = float(rng.uniform(0.3 * span, 0.7 * span - width))
        beam = _tint(rng, BEAM, 0.03)
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
            room.walls[wall].box(s, a0, a0 + size, 0, size, 0, h, COLUMN, _tint(rng, COLUMN, 0.04),
                                 skip=("back", "top", "bottom"))
            room.wall_used[wall].append((a0, a0 + size))
            room.floor_used.append(room.walls[wall].rect(a0, a0 + size, 0, size))

    for _ in range(int(rng.integers(*kind.doors))):  # doors: recessed leaf, outset frame, clear floor
        width, top = float(rng.uniform(0.85, 1.0)), float(rng.uniform(2.0, min(2.2, h - 0.2)))
        spot = room.place_on_wall(rng, width)
        if spot is None:
            continue
        wall, a0 = spot
        frame, color = room.walls[wall], _tint(rng, DOOR)
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
        frame, color = room.walls[wall], _tint(rng, WINDOW, 0.04)
        frame.quad(s, a0, a0 + width, -0.12, bottom, top, WINDOW, color)
        _reveals(s, frame, a0, a0 + width, bottom, top, 0.12, WINDOW, color * 0.9, sill=True)
        if width > 1.4:  # a mullion in the middle
            mid = a0 + width / 2
            frame.box(s, mid - 0.03, mid + 0.03, -0.12, -0.07, bottom, top, WINDOW, color * 0.85,
                      skip=("back",))
        room.wall_used[wall].append((a0, a0 + width))
        room.openings[wall].append((a0, a0 + width, bottom, top))

    wall_color = _tint(rng, WALL, 0.03)
    for wall in range(4):
        _wall_with_openings(s, room, wall, wall_color * rng.normal(1.0, 0.015))


def _reveals(s: _Surfaces, frame: _Frame, a0: float, a1: float, z0: float, z1: float, depth: float,
             label: int, color: np.ndarray, sill: bool) -> None:
    """The side, top (and bottom) faces of an opening cut ``depth`` metres into the wall."""
    for a in (a0, a1):
        s.quad(frame.point(a, -depth, z0), frame.vector(0, depth, 0), (0, 0, z1 - z0), label, color)
    s.quad(frame.point(a0, -depth, z1), frame.vector(a1 - a0, 0, 0), frame.vector(0, depth, 0), label, color)
    if sill:
        s.quad(frame.point(a0, -depth, z0), frame.vector(a1 - a0, 0, 0), frame.vector(0, depth, 0),
               label, color)


def _wall_with_openings(s: _Surfaces, room: _Room, wall: int, color: np.ndarray) -> None:
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


def _add_wall_objects(s: _Surfaces, room: _Room, rng: np.random.Generator, kind: RoomKind) -> None:
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
                                 _tint(rng, BOARD, 0.03), skip=("back",))
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
        _bookcase(s, room.walls[wall], a0, width, depth, height, rng)
        room.wall_used[wall].append((a0, a0 + width))
        room.floor_used.append(rect)

    if rng.random() < kind.sofa:
        length, depth = float(rng.uniform(1.6, 2.2)), float(rng.uniform(0.8, 0.9))
        spot = room.place_on_wall(rng, length)
        if spot is not None:
            wall, a0 = spot
            rect = room.walls[wall].rect(a0, a0 + length, 0, depth)
            if room.floor_free(rect):
                _sofa(s, room.walls[wall], a0, length, depth, rng)
                room.wall_used[wall].append((a0, a0 + length))
                room.floor_used.append(rect)


def _bookcase(s: _Surfaces, f: _Frame, a0: float, width: float, depth: float, height: float,
              rng: np.random.Generator) -> None:
    color, t = _tint(rng, BOOKCASE), 0.02
    a1 = a0 + width
    f.quad(s, a0, a1, 0.01, 0, height, BOOKCASE, color * 0.9)  # back panel
    f.box(s, a0, a0 + t, 0, depth, 0, height, BOOKCASE, color, skip=("back", "bottom"))
    f.box(s, a1 - t, a1, 0, depth, 0, height, BOOKCASE, color, skip=("back", "bottom"))
    f.box(s, a0, a1, 0, depth, height - t, height, BOOKCASE, color, skip=("back",))
    shelves = int(rng.integers(3, 6))
    levels = np.linspace(0.05, height - t, shelves + 1)[:-1]
    for z in levels:
        f.box(s, a0 + t, a1 - t, 0.01, depth, z, z + t, BOOKCASE, color, skip=("back", "left", "right"))
        cursor = a0 + t + float(rng.uniform(0, 0.1))
        gap = float(levels[1] - levels[0]) if shelves > 1 else 0.3
        while cursor < a1 - t - 0.15:  # a row of books, each a thin box of its own colour
            run = float(rng.uniform(0.1, 0.35))
            tall = float(rng.uniform(0.5, 0.85)) * (gap - t)
            f.box(s, cursor, min(cursor + run, a1 - t), 0.03, depth * float(rng.uniform(0.6, 0.9)),
                  z + t, z + t + tall, BOOKCASE, _random_color(rng) * 0.8, skip=("back", "bottom"))
            cursor += run + float(rng.uniform(0.0, 0.25))


def _sofa(s: _Surfaces, f: _Frame, a0: float, length: float, depth: float, rng: np.random.Generator) -> None:
    color = _tint(rng, SOFA)
    a1, arm = a0 + length, 0.18
    f.box(s, a0 + arm, a1 - arm, 0, depth, 0.0, 0.42, SOFA, color, skip=("bottom", "back"))  # seat
    f.box(s, a0 + arm, a1 - arm, 0, 0.22, 0.42, 0.85, SOFA, color * 0.95, skip=("back",))  # backrest
    for lo in (a0, a1 - arm):  # arms
        f.box(s, lo, lo + arm, 0, depth, 0.0, 0.62, SOFA, color * 0.97, skip=("bottom", "back"))


def _add_tables_and_chairs(s: _Surfaces, room: _Room, rng: np.random.Generator, kind: RoomKind) -> None:
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
        top_z = float(rng.uniform(0.72, 0.78))
        color, leg = _tint(rng, TABLE), 0.05
        s.box((x0, y0, top_z - 0.04), (x0 + length, y0 + width, top_z), TABLE, color)
        for lx_, ly_ in ((x0, y0), (x0 + length - leg, y0), (x0, y0 + width - leg),
                         (x0 + length - leg, y0 + width - leg)):
            s.box((lx_ + 0.02, ly_ + 0.02, 0), (lx_ + leg, ly_ + leg, top_z - 0.04), TABLE,
                  color * 0.8, skip=((2, 0), (2, 1)))
        room.floor_used.append(rect)
        for _ in range(int(rng.integers(1, 5))):
            _clutter_item(s, rng, (x0 + 0.1, y0 + 0.1, x0 + length - 0.1, y0 + width - 0.1), top_z,
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


def _try_chair(s: _Surfaces, room: _Room, rng: np.random.Generator, cx: float, cy: float,
               quarter_turns: int) -> None:
    """A chair centred at (cx, cy) facing local +d (0 quarter turns: +y, 1: -x, 2: -y, 3: +x)."""
    f = _Frame((cx, cy), quarter_turns)
    half = 0.23
    rect = f.rect(-half, half, -half, half)
    if not room.floor_free(rect):
        return
    color, leg = _tint(rng, CHAIR), 0.03
    seat_z = float(rng.uniform(0.42, 0.48))
    f.box(s, -half, half, -half, half, seat_z - 0.05, seat_z, CHAIR, color)
    f.box(s, -half, half, -half, -half + 0.05, seat_z, seat_z + float(rng.uniform(0.35, 0.5)),
          CHAIR, color * 0.95, skip=("bottom",))
    for a in (-half, half - leg):
        for d in (-half, half - leg):
            f.box(s, a, a + leg, d, d + leg, 0, seat_z - 0.05, CHAIR, color * 0.7,
                  skip=("bottom", "top"))
    room.floor_used.append(rect)


def _clutter_item(s: _Surfaces, rng: np.random.Generator, area: tuple[float, float, float, float],
                  z: float, small: bool) -> None:
    """A box or blob of random colour standing at height ``z`` somewhere inside ``area``."""
    x0, y0, x1, y1 = area
    size = rng.uniform(0.08, 0.3 if small else 0.5, 3)
    size[:2] = np.minimum(size[:2], (x1 - x0, y1 - y0))
    cx = _uniform(rng, x0 + size[0] / 2, x1 - size[0] / 2)
    cy = _uniform(rng, y0 + size[1] / 2, y1 - size[1] / 2)
    color = _random_color(rng)
    if rng.random() < 0.6:
        s.box((cx - size[0] / 2, cy - size[1] / 2, z), (cx + size[0] / 2, cy + size[1] / 2, z + size[2]),
              CLUTTER, color, skip=((2, 0),))
    else:
        s.dome((cx, cy, z), size / 2, CLUTTER, color)


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A uniform draw in ``[lo, hi]``; ``lo`` when rounding left ``hi`` a hair below it (an item as
    wide as its area)."""
    return float(rng.uniform(lo, hi)) if hi >= lo else lo


def _add_floor_clutter(s: _Surfaces, room: _Room, rng: np.random.Generator, kind: RoomKind) -> None:
    """Boxes and blobs standing on the floor where there is room (bins, bags, boxes)."""
    for _ in range(int(rng.integers(*kind.floor_clutter))):
        size = float(rng.uniform(0.25, 0.6))
        for _ in range(20):
            x0 = float(rng.uniform(0.1, room.lx - size - 0.1))
            y0 = float(rng.uniform(0.1, room.ly - size - 0.1))
            rect = (x0, y0, x0 + size, y0 + size)
            if room.floor_free(rect, margin=0.05):
                _clutter_item(s, rng, rect, 0.0, small=False)
                room.floor_used.append(rect)
                break
