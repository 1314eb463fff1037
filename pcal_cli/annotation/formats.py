"""Files a person labels: the field layout, reserved values and PLY / LAS readers and writers.

Exported PLY (binary little-endian, ``vertex`` element), every extra field prefixed ``scalar_``
so that CloudCompare loads it as a scalar field (SF) with no dialog:

    x y z                  float32, relative to the scene offset (header comment ``pcal_offset``)
    red green blue         uint8, when the scene has colours
    scalar_pid             float32 point index in the scene (exact below 2**24 points); larger
                           scenes get ``scalar_pid_hi`` / ``scalar_pid_lo`` (pid = hi * 2**24 + lo)
    scalar_query           uint8, 1 on the points to label
    scalar_Classification  uint8: known class id, QUERY (255) to label, NOT_ASKED (254) otherwise
    scalar_unit            float32 labelling unit id on query points, -1 elsewhere (region/cell)
    scalar_pred            uint8 predicted class (optional), scalar_score float32 (optional)

LAS 1.4 (point format 6, or 7 with colours): absolute coordinates, the same classification in
the standard ``classification`` (8 bits), extra-bytes dimensions ``pid`` (or ``pid_hi`` /
``pid_lo``), ``query``, ``unit``, ``pred``, ``score``.

CloudCompare keeps every SF as float32, so integers are exact only below 2**24 = 16,777,216;
every exported integer field stays below that bound.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from pcal_cli.atomic import atomic_open
from pcal_cli.data.ply import OFFSET_COMMENT
from pcal_cli.errors import PcalError

QUERY = 255
"""Classification of a point to label (CloudCompare-safe, fits LAS 1.4's 8-bit class)."""
NOT_ASKED = 254
"""Classification of an unknown point that was not asked this round."""
MAX_CLASSES = NOT_ASKED
"""Class ids must stay below the reserved values."""
FLOAT32_EXACT = 2**24
"""Integers below this survive CloudCompare's float32 scalar fields exactly."""

PLY_SUFFIXES = (".ply",)
LAS_SUFFIXES = (".las", ".laz")
FORMATS = ("ply", "las")
LABEL_FIELDS = ("scalar_Classification", "Classification", "classification", "scalar_classification",
                "label", "scalar_label")
PID_FIELDS = ("scalar_pid", "pid")
PID_SPLIT_FIELDS = (("scalar_pid_hi", "scalar_pid_lo"), ("pid_hi", "pid_lo"))


def pid_columns(n: int) -> dict[str, np.ndarray]:
    """Point ids ``0..n-1`` as one column ``pid``, or ``pid_hi``/``pid_lo`` when ``n > 2**24``."""
    return encode_pid(np.arange(n, dtype=np.int64), n)


def encode_pid(pid: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """``pid`` of a scene of ``n`` points as columns that are exact in float32."""
    pid = np.asarray(pid, dtype=np.int64)
    if n <= FLOAT32_EXACT:
        return {"pid": pid}
    return {"pid_hi": pid // FLOAT32_EXACT, "pid_lo": pid % FLOAT32_EXACT}


def combine_pid(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """The pid (float64, NaN kept) of split ``hi``/``lo`` columns."""
    return np.asarray(hi, dtype=np.float64) * FLOAT32_EXACT + np.asarray(lo, dtype=np.float64)


@dataclass
class LabelFile:
    """What an annotated file holds, in file order; values are float64 as stored (NaN kept)."""

    path: Path
    xyz: np.ndarray
    labels: np.ndarray
    label_field: str
    pid: np.ndarray | None


# -- writing -------------------------------------------------------------------------------------
def write_label_ply(path: Path, columns: list[tuple[str, str, np.ndarray]], offset: np.ndarray) -> None:
    """Write ``(name, numpy type, values)`` columns as a binary little-endian PLY, atomically."""
    data = np.empty(len(columns[0][2]), dtype=[(name, "<" + kind) for name, kind, _ in columns])
    for name, _, values in columns:
        data[name] = values
    comments = ["written by pcal for labelling"]
    if np.any(offset != 0):
        comments.append(f"{OFFSET_COMMENT} " + " ".join(repr(float(v)) for v in offset))
    ply = PlyData([PlyElement.describe(data, "vertex")], text=False, byte_order="<", comments=comments)
    with atomic_open(path, "wb") as handle:
        ply.write(handle)


def write_label_las(path: Path, xyz: np.ndarray, classification: np.ndarray, rgb: np.ndarray | None,
                    extra: list[tuple[str, str, np.ndarray]]) -> None:
    """Write absolute ``xyz`` (float64) as LAS 1.4 with extra-bytes dimensions, atomically."""
    laspy = _laspy()
    header = laspy.LasHeader(point_format=6 if rgb is None else 7, version="1.4")
    origin = np.floor(xyz.min(axis=0)) if len(xyz) else np.zeros(3)
    extent = float((xyz.max(axis=0) - origin).max()) if len(xyz) else 0.0
    scale = next(s for s in (1e-4, 1e-3, 1e-2) if extent / s < 2**31 - 1)
    header.offsets = origin
    header.scales = np.full(3, scale)
    for name, kind, _ in extra:
        header.add_extra_dim(laspy.ExtraBytesParams(name=name, type=np.dtype(kind)))
    las = laspy.LasData(header)
    las.x, las.y, las.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    las.classification = classification.astype(np.uint8)
    if rgb is not None:
        for i, channel in enumerate(("red", "green", "blue")):
            las[channel] = rgb[:, i].astype(np.uint16) * 257
    for name, kind, values in extra:
        las[name] = values.astype(kind)
    with atomic_open(path, "wb") as handle:
        las.write(handle, do_compress=False)


# -- reading -------------------------------------------------------------------------------------
def read_label_file(path: str | os.PathLike, label_field: str | None = None) -> LabelFile:
    """Read an annotated PLY or LAS/LAZ file; any unreadable file is one clear :class:`PcalError`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PLY_SUFFIXES:
        return _read_ply(path, label_field)
    if suffix in LAS_SUFFIXES:
        return _read_las(path, label_field)
    raise PcalError(f"{path}: not a PLY or LAS/LAZ file")


def _read_ply(path: Path, label_field: str | None) -> LabelFile:
    try:
        ply = PlyData.read(str(path), mmap=False)
        vertex = ply["vertex"].data
    except KeyError:
        raise PcalError(f"{path}: PLY file has no 'vertex' element") from None
    except Exception as exc:  # plyfile raises many types on malformed or truncated input
        raise PcalError(f"{path}: not a readable PLY file ({_one_line(exc)})") from None
    fields = vertex.dtype.names or ()
    if not all(axis in fields for axis in ("x", "y", "z")):
        raise PcalError(f"{path}: PLY vertices have no x/y/z fields (found: {', '.join(fields) or 'none'})")
    xyz = np.stack([np.asarray(vertex[a], dtype=np.float64) for a in ("x", "y", "z")], axis=1)
    name = _label_name(path, fields, label_field)
    columns = {f: vertex[f] for f in fields}
    return LabelFile(path, xyz, np.asarray(vertex[name], dtype=np.float64), name, _pid(columns))


def _read_las(path: Path, label_field: str | None) -> LabelFile:
    laspy = _laspy()
    try:
        las = laspy.read(str(path))
        fields = tuple(las.point_format.dimension_names)
        xyz = np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], axis=1).astype(np.float64)
        name = _label_name(path, fields, label_field)
        labels = np.asarray(las[name], dtype=np.float64)
        columns = {f: np.asarray(las[f]) for f in fields if f in PID_FIELDS or "pid" in f}
    except PcalError:
        raise
    except Exception as exc:  # laspy raises many types on malformed or truncated input
        raise PcalError(f"{path}: not a readable LAS/LAZ file ({_one_line(exc)})") from None
    if len(labels) != len(xyz):
        raise PcalError(f"{path}: truncated LAS file ({len(labels)} of {len(xyz)} points)")
    return LabelFile(path, xyz, labels, name, _pid(columns))


def _label_name(path: Path, fields: tuple[str, ...], label_field: str | None) -> str:
    if label_field is not None:
        if label_field not in fields:
            raise PcalError(f"{path}: no field '{label_field}' (found: {', '.join(fields)})")
        return label_field
    found = next((f for f in LABEL_FIELDS if f in fields), None)
    if found is None:
        raise PcalError(f"{path}: no classification field (looked for {', '.join(LABEL_FIELDS)}; "
                        f"found: {', '.join(fields)})")
    return found


def _pid(columns: dict[str, np.ndarray]) -> np.ndarray | None:
    for hi, lo in PID_SPLIT_FIELDS:
        if hi in columns and lo in columns:
            return combine_pid(columns[hi], columns[lo])
    name = next((f for f in PID_FIELDS if f in columns), None)
    return None if name is None else np.asarray(columns[name], dtype=np.float64)


def _laspy():
    try:
        import laspy
    except ImportError:
        raise PcalError("LAS files need laspy: pip install 'pcal[las]'") from None
    return laspy


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
