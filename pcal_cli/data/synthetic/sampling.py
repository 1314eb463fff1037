"""Labelled surface patches and area-weighted point sampling: the last step of a synthetic room.

A room is a list of flat patches (parallelograms) and half-ellipsoid "domes", each with a class
and a colour (:class:`Surfaces`). :meth:`Surfaces.sample` draws the points: a multinomial over
patch areas gives each patch its exact share of ``points``, then every point is placed uniformly
on its patch, all in a few vectorised numpy operations; then shading, colour and position noise,
and a shuffle of the point order.
"""

from __future__ import annotations

import numpy as np

POSITION_NOISE = 0.003  # metres, standard deviation of the simulated sensor noise
COLOR_NOISE = 4.0  # per-point colour noise, standard deviation on the 0..255 scale


class Surfaces:
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
