"""The student's strongly augmented view for teacher-student training (HPAL, ICCV 2023).

Every function keeps the number and the order of the points, so point ``i`` of the strong view is
point ``i`` of the teacher's clean view. Pure numpy/scipy, randomness only from the given
``numpy.random.Generator``: same input and same generator state, same output.

Geometry (metres), in this order, as HPAL's released code:

1. elastic distortion, probability 0.95, two passes (:data:`ELASTIC_PASSES`);
2. rotation about the vertical axis through the bounding-box centre, angle uniform in [0, 2 pi);
3. probability 0.95: tilts about x and y, each uniform in [-pi/64, pi/64], in random order;
4. probability 0.95: anisotropic scaling, one factor uniform in [0.9, 1.1] per axis (about the centre).

Colours (0-255), per point (HPAL did this per voxel, after voxelisation):

1. probability 0.2: auto-contrast (stretch each channel to 0-255) blended with a uniform factor;
2. probability 0.95: one random offset per channel, uniform in +-0.1 * 255, for all points;
3. probability 0.95: Gaussian jitter per point and channel, std 0.05 * 255; clipped to 0-255.

Elastic distortion: standard normal noise on a coarse grid of ``granularity`` metres, smoothed by a
Gaussian of one grid step and rescaled to unit variance, interpolated trilinearly at the points
and multiplied by ``magnitude``, so ``magnitude`` is the per-axis standard deviation of the
displacement in metres and ``granularity`` its correlation length. HPAL's release used magnitudes
0.4 and 1.6 on box-smoothed noise whose standard deviation is about 0.11, i.e. displacements of
about 4.5 cm and 18 cm per axis; :data:`ELASTIC_PASSES` states those standard deviations directly.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import gaussian_filter

from pcal_cli.errors import PcalError

#: (granularity m, displacement std m) of the two elastic passes.
ELASTIC_PASSES: tuple[tuple[float, float], ...] = ((0.2, 0.045), (0.8, 0.18))
#: Probabilities of elastic distortion, tilt and anisotropic scaling.
P_ELASTIC = P_TILT = P_SCALE = 0.95
#: Largest tilt about x and about y (radians).
MAX_TILT = np.pi / 64
#: Range of the per-axis scale factors.
SCALE_RANGE = (0.9, 1.1)
#: Probability and the channel-offset range of the colour translation; std of the colour jitter.
P_AUTOCONTRAST, P_TRANSLATE, P_JITTER = 0.2, 0.95, 0.95
COLOUR_SHIFT = 0.1 * 255
COLOUR_STD = 0.05 * 255
#: Largest coarse grid (nodes) of one elastic pass; beyond it the granularity is coarsened.
MAX_GRID_NODES = 1 << 24
#: Smoothing of the elastic noise (grid steps) and the extra grid steps around the points.
_SIGMA, _PAD = 1.0, 3


def _as_xyz(xyz: np.ndarray) -> np.ndarray:
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise PcalError(f"expected an (N, 3) array of coordinates, got shape {xyz.shape}")
    return xyz.astype(np.float64)


def elastic_distortion(xyz: np.ndarray, granularity: float, magnitude: float,
                       rng: np.random.Generator) -> np.ndarray:
    """``xyz`` plus a smooth random displacement field (float64 ``[N, 3]``): per-axis std
    ``magnitude`` metres, correlation length about ``granularity`` metres (module docstring)."""
    xyz = _as_xyz(xyz)
    if not (granularity > 0 and magnitude >= 0):
        raise PcalError(f"elastic distortion needs granularity > 0 and magnitude >= 0, got {granularity}, {magnitude}")
    if len(xyz) == 0 or magnitude == 0:
        return xyz
    low = xyz.min(axis=0)
    extent = xyz.max(axis=0) - low
    step = float(granularity)
    while np.prod(np.ceil(extent / step) + 1 + 2 * _PAD) > MAX_GRID_NODES:
        step *= 1.25
    shape = (np.ceil(extent / step).astype(np.int64) + 1 + 2 * _PAD)
    noise = rng.standard_normal((*shape.tolist(), 3))
    for axis in range(3):
        noise[..., axis] = gaussian_filter(noise[..., axis], _SIGMA, mode="wrap")
    # a unit-variance Gaussian field: divide by the L2 norm of the (separable) smoothing kernel
    radius = int(4.0 * _SIGMA + 0.5)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / _SIGMA) ** 2)
    kernel /= kernel.sum()
    noise /= np.sqrt(np.square(kernel).sum()) ** 3
    axes = [low[d] + step * (np.arange(shape[d]) - _PAD) for d in range(3)]
    field = RegularGridInterpolator(axes, noise, method="linear", bounds_error=False, fill_value=None)
    return xyz + magnitude * field(xyz)


def rotation_matrix(angle_z: float, tilt_x: float = 0.0, tilt_y: float = 0.0, tilt_x_first: bool = True) -> np.ndarray:
    """``R = Rz(angle_z) @ T`` with ``T = Ry(tilt_y) @ Rx(tilt_x)`` (x first) or ``Rx @ Ry``."""
    def rot(axis: int, angle: float) -> np.ndarray:
        c, s = np.cos(angle), np.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        m = np.eye(3)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        return m

    rx, ry = rot(0, tilt_x), rot(1, tilt_y)
    tilt = ry @ rx if tilt_x_first else rx @ ry
    return rot(2, angle_z) @ tilt


def rotate_tilt_scale(xyz: np.ndarray, rng: np.random.Generator, *, p_tilt: float = P_TILT,
                      p_scale: float = P_SCALE) -> np.ndarray:
    """Rotation about z (uniform angle), random tilts about x and y (``p_tilt``) and per-axis
    scaling (``p_scale``), all about the bounding-box centre; float64 ``[N, 3]``."""
    xyz = _as_xyz(xyz)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    tilt_x = tilt_y = 0.0
    x_first = True
    if rng.random() < p_tilt:
        tilt_x, tilt_y = rng.uniform(-MAX_TILT, MAX_TILT, 2)
        x_first = bool(rng.random() < 0.5)
    scale = rng.uniform(*SCALE_RANGE, 3) if rng.random() < p_scale else np.ones(3)
    if len(xyz) == 0:
        return xyz
    centre = 0.5 * (xyz.min(axis=0) + xyz.max(axis=0))
    matrix = rotation_matrix(angle, tilt_x, tilt_y, x_first) * scale[:, None]  # scale after rotating
    return (xyz - centre) @ matrix.T + centre


def strong_colours(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Auto-contrast (p 0.2, blended), a shared offset per channel (p 0.95) and per-point jitter
    (p 0.95) of uint8 colours ``[N, 3]``; uint8 out, clipped to 0-255."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 2 or rgb.shape[1] != 3:
        raise PcalError(f"expected (N, 3) colours, got shape {rgb.shape}")
    out = rgb.astype(np.float64)
    if len(out) == 0:
        return rgb.astype(np.uint8)
    if rng.random() < P_AUTOCONTRAST:
        low, high = out.min(axis=0), out.max(axis=0)
        span = high - low
        stretched = np.where(span > 0, (out - low) * (255.0 / np.where(span > 0, span, 1.0)), out)
        blend = rng.random()
        out = (1.0 - blend) * out + blend * stretched
    if rng.random() < P_TRANSLATE:
        out += rng.uniform(-COLOUR_SHIFT, COLOUR_SHIFT, 3)
    if rng.random() < P_JITTER:
        out += rng.normal(0.0, COLOUR_STD, out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def strong_view(xyz: np.ndarray, rgb: np.ndarray | None, rng: np.random.Generator,
                elastic: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The student's view of a scene: ``(xyz float32 [N, 3], rgb uint8 [N, 3] or None)``, same
    points in the same order (module docstring for the recipe); ``elastic=False`` leaves out
    step 1 of the geometry (``--no-ts-elastic``)."""
    out = _as_xyz(xyz)
    if rgb is not None and len(rgb) != len(out):
        raise PcalError(f"strong_view: {len(out)} points but {len(rgb)} colours")
    if elastic and rng.random() < P_ELASTIC:
        for granularity, magnitude in ELASTIC_PASSES:
            out = elastic_distortion(out, granularity, magnitude, rng)
    out = rotate_tilt_scale(out, rng)
    colours = None if rgb is None else strong_colours(rgb, rng)
    return out.astype(np.float32), colours
