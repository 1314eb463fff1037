"""The objects of a synthetic room as surface patches: class ids, colours, frames and furniture.

Class ids are the 13 S3DIS classes (:data:`~pcal_cli.data.classes.S3DIS_CLASSES`). Every object
takes one colour from a per-class palette (:func:`tint`). A :class:`Frame` places a shape in local
floor-plan coordinates (along a wall and into the room, or around a chair's centre). The shapes
(bookcases with shelves and books, sofas, tables with legs, chairs, clutter boxes and blobs) add
their patches to a :class:`~pcal_cli.data.synthetic.sampling.Surfaces` and draw their sizes and
colours from the generator they are given, always in the same order. Where they go is
:mod:`pcal_cli.data.synthetic.layout`'s business.
"""

from __future__ import annotations

import numpy as np

from pcal_cli.data.classes import S3DIS_CLASSES
from pcal_cli.data.synthetic.sampling import Surfaces

(CEILING, FLOOR, WALL, BEAM, COLUMN, WINDOW, DOOR,
 TABLE, CHAIR, SOFA, BOOKCASE, BOARD, CLUTTER) = range(len(S3DIS_CLASSES))

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

CHAIR_HALF = 0.23  # a chair's footprint: this many metres either side of its centre, both axes


def tint(rng: np.random.Generator, label: int, spread: float = 0.07) -> np.ndarray:
    """One object's colour: a palette entry with brightness and per-channel variation."""
    options = _PALETTE[label]
    base = np.asarray(options[int(rng.integers(len(options)))], float)
    return np.clip(base * rng.normal(1.0, spread) + rng.normal(0.0, 5.0, 3), 0, 255)


def random_color(rng: np.random.Generator) -> np.ndarray:
    """A colour of no class's palette (books, clutter): each channel uniform in 20..235."""
    return rng.uniform(20, 235, 3)


class Frame:
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

    def box(self, s: Surfaces, a0, a1, d0, d1, z0, z1, label: int, rgb: np.ndarray,
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

    def quad(self, s: Surfaces, a0, a1, d, z0, z1, label: int, rgb: np.ndarray) -> None:
        """A vertical rectangle parallel to the frame's ``a`` axis at depth ``d``."""
        s.quad(self.point(a0, d, z0), self.vector(a1 - a0, 0, 0), (0, 0, z1 - z0), label, rgb)


def bookcase(s: Surfaces, f: Frame, a0: float, width: float, depth: float, height: float,
             rng: np.random.Generator) -> None:
    color, t = tint(rng, BOOKCASE), 0.02
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
                  z + t, z + t + tall, BOOKCASE, random_color(rng) * 0.8, skip=("back", "bottom"))
            cursor += run + float(rng.uniform(0.0, 0.25))


def sofa(s: Surfaces, f: Frame, a0: float, length: float, depth: float, rng: np.random.Generator) -> None:
    color = tint(rng, SOFA)
    a1, arm = a0 + length, 0.18
    f.box(s, a0 + arm, a1 - arm, 0, depth, 0.0, 0.42, SOFA, color, skip=("bottom", "back"))  # seat
    f.box(s, a0 + arm, a1 - arm, 0, 0.22, 0.42, 0.85, SOFA, color * 0.95, skip=("back",))  # backrest
    for lo in (a0, a1 - arm):  # arms
        f.box(s, lo, lo + arm, 0, depth, 0.0, 0.62, SOFA, color * 0.97, skip=("bottom", "back"))


def table(s: Surfaces, rng: np.random.Generator, x0: float, y0: float, length: float,
          width: float) -> float:
    """A table over the floor rectangle ``[x0, x0 + length] x [y0, y0 + width]``: a 4 cm top and
    four legs; returns the height of its top."""
    top_z = float(rng.uniform(0.72, 0.78))
    color, leg = tint(rng, TABLE), 0.05
    s.box((x0, y0, top_z - 0.04), (x0 + length, y0 + width, top_z), TABLE, color)
    for lx_, ly_ in ((x0, y0), (x0 + length - leg, y0), (x0, y0 + width - leg),
                     (x0 + length - leg, y0 + width - leg)):
        s.box((lx_ + 0.02, ly_ + 0.02, 0), (lx_ + leg, ly_ + leg, top_z - 0.04), TABLE,
              color * 0.8, skip=((2, 0), (2, 1)))
    return top_z


def chair(s: Surfaces, f: Frame, rng: np.random.Generator) -> None:
    """A chair standing on ``f``'s origin, facing ``f``'s +d: a seat, a backrest along its -d edge
    and four legs, in the square footprint ``[-CHAIR_HALF, CHAIR_HALF]`` on both local axes."""
    half = CHAIR_HALF
    color, leg = tint(rng, CHAIR), 0.03
    seat_z = float(rng.uniform(0.42, 0.48))
    f.box(s, -half, half, -half, half, seat_z - 0.05, seat_z, CHAIR, color)
    f.box(s, -half, half, -half, -half + 0.05, seat_z, seat_z + float(rng.uniform(0.35, 0.5)),
          CHAIR, color * 0.95, skip=("bottom",))
    for a in (-half, half - leg):
        for d in (-half, half - leg):
            f.box(s, a, a + leg, d, d + leg, 0, seat_z - 0.05, CHAIR, color * 0.7,
                  skip=("bottom", "top"))


def clutter_item(s: Surfaces, rng: np.random.Generator, area: tuple[float, float, float, float],
                 z: float, small: bool) -> None:
    """A box or blob of random colour standing at height ``z`` somewhere inside ``area``."""
    x0, y0, x1, y1 = area
    size = rng.uniform(0.08, 0.3 if small else 0.5, 3)
    size[:2] = np.minimum(size[:2], (x1 - x0, y1 - y0))
    cx = _uniform(rng, x0 + size[0] / 2, x1 - size[0] / 2)
    cy = _uniform(rng, y0 + size[1] / 2, y1 - size[1] / 2)
    color = random_color(rng)
    if rng.random() < 0.6:
        s.box((cx - size[0] / 2, cy - size[1] / 2, z), (cx + size[0] / 2, cy + size[1] / 2, z + size[2]),
              CLUTTER, color, skip=((2, 0),))
    else:
        s.dome((cx, cy, z), size / 2, CLUTTER, color)


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A uniform draw in ``[lo, hi]``; ``lo`` when rounding left ``hi`` a hair below it (an item as
    wide as its area)."""
    return float(rng.uniform(lo, hi)) if hi >= lo else lo
