"""Class tables of the supported benchmarks: names, colours (RGB) and raw-id mappings."""

from __future__ import annotations

import numpy as np

S3DIS_CLASSES = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door",
    "table", "chair", "sofa", "bookcase", "board", "clutter",
)
S3DIS_COLORS = (
    (0, 255, 0), (0, 0, 255), (0, 255, 255), (255, 255, 0), (255, 0, 255), (100, 100, 255),
    (200, 200, 100), (170, 120, 200), (255, 0, 0), (200, 100, 100), (10, 200, 100),
    (200, 200, 200), (50, 50, 50),
)

# ScanNet v2 benchmark: train id i <- NYU40 id SCANNET_NYU40_IDS[i]; every other NYU40 id is ignored.
SCANNET_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
    "bathtub", "otherfurniture",
)
SCANNET_NYU40_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
SCANNET_COLORS = (
    (174, 199, 232), (152, 223, 138), (31, 119, 180), (255, 187, 120), (188, 189, 34),
    (140, 86, 75), (255, 152, 150), (214, 39, 40), (197, 176, 213), (148, 103, 189),
    (196, 156, 148), (23, 190, 207), (247, 182, 210), (219, 219, 141), (255, 127, 14),
    (158, 218, 229), (44, 160, 44), (112, 128, 144), (227, 119, 194), (82, 84, 163),
)

# SemanticKITTI single-scan benchmark (semantic-kitti.yaml learning map; colours converted to RGB).
SEMANTICKITTI_CLASSES = (
    "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist",
    "motorcyclist", "road", "parking", "sidewalk", "other-ground", "building", "fence",
    "vegetation", "trunk", "terrain", "pole", "traffic-sign",
)
SEMANTICKITTI_COLORS = (
    (100, 150, 245), (100, 230, 245), (30, 60, 150), (80, 30, 180), (0, 0, 255), (255, 30, 30),
    (255, 40, 200), (150, 30, 90), (255, 0, 255), (255, 150, 255), (75, 0, 75), (175, 0, 75),
    (255, 200, 0), (255, 120, 50), (0, 175, 0), (135, 60, 0), (150, 240, 80), (255, 240, 150),
    (255, 0, 0),
)
# raw id -> 0-based class (ids not listed, e.g. 0 unlabeled, 1 outlier, 52, 99, map to ignore)
SEMANTICKITTI_LEARNING_MAP = {
    10: 0, 252: 0, 11: 1, 15: 2, 18: 3, 258: 3, 13: 4, 16: 4, 20: 4, 256: 4, 257: 4, 259: 4,
    30: 5, 254: 5, 31: 6, 253: 6, 32: 7, 255: 7, 40: 8, 60: 8, 44: 9, 48: 10, 49: 11, 50: 12,
    51: 13, 70: 14, 71: 15, 72: 16, 80: 17, 81: 18,
}


# ASPRS LAS 1.4 standard classification codes (point formats 6-10): code -> class, fixed so that
# every project prepared with ``--classes asprs`` has the same class list, whatever its tiles hold.
ASPRS_TABLE = (
    (2, "ground", (150, 100, 50)), (3, "low vegetation", (170, 220, 110)),
    (4, "medium vegetation", (60, 170, 60)), (5, "high vegetation", (0, 100, 0)),
    (6, "building", (220, 60, 40)), (9, "water", (40, 120, 230)), (10, "rail", (130, 60, 140)),
    (11, "road surface", (120, 120, 120)), (13, "wire guard", (250, 220, 0)),
    (14, "wire conductor", (250, 160, 0)), (15, "transmission tower", (190, 90, 30)),
    (16, "wire connector", (240, 240, 120)), (17, "bridge deck", (170, 130, 100)),
)
ASPRS_CLASSES = tuple(name for _, name, _ in ASPRS_TABLE)
ASPRS_COLORS = tuple(color for _, _, color in ASPRS_TABLE)
ASPRS_IDS = {code: index for index, (code, _, _) in enumerate(ASPRS_TABLE)}  # raw code -> class
# 0 never classified, 1 unclassified, 7 low noise, 8 reserved (model key-point in LAS 1.0-1.3),
# 12 reserved (overlap in LAS 1.0-1.3), 18 high noise: ignored, never a class.
ASPRS_IGNORE_IDS = (0, 1, 7, 8, 12, 18)


def lookup_table(mapping: dict[int, int], size: int, ignore: int = -1) -> np.ndarray:
    """A dense int16 table ``t`` with ``t[raw] = mapping[raw]`` and ``ignore`` elsewhere."""
    table = np.full(size, ignore, dtype=np.int16)
    for raw, mapped in mapping.items():
        table[raw] = mapped
    return table


def map_labels(raw: np.ndarray, mapping: dict[int, int], ignore: int = -1) -> np.ndarray:
    """Map raw integer ids through ``mapping``; ids not in it (or negative) become ``ignore``."""
    raw = np.asarray(raw).astype(np.int64)
    size = max(max(mapping, default=0), int(raw.max(initial=0))) + 1
    table = lookup_table(mapping, size, ignore)
    out = np.full(raw.shape, ignore, dtype=np.int16)
    valid = raw >= 0
    out[valid] = table[raw[valid]]
    return out


def default_colors(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colours for a user's class list (a fixed, well-spread palette)."""
    golden = 0.618033988749895
    colors = []
    for i in range(n):
        h = (i * golden) % 1.0
        colors.append(_hsv_to_rgb(h, 0.65, 0.95))
    return colors


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (round(r * 255), round(g * 255), round(b * 255))
