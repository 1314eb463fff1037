"""Readers for raw point files: NPY, LAS/LAZ, KITTI-style ``.bin`` scans and S3DIS text.

Every reader returns a :class:`~pcal_cli.data.scene.Scene` whose ``label`` holds the *raw* ids as
stored in the file (or ``IGNORE`` when the file has none), unless a mapping is passed; mapping raw
ids to classes is the importer's job. Coordinates far from the origin (georeferenced data) are
kept exact by splitting them into a float64 ``offset`` and float32 remainders. Bad input (missing,
truncated or corrupt files, arrays of the wrong shape) raises :class:`PcalError` with one line that
names the file.
"""

from __future__ import annotations

import contextlib

import io
import os
import warnings
from pathlib import Path

import numpy as np

from pcal_cli.data.classes import map_labels
from pcal_cli.data.scene import Scene, split_offset
from pcal_cli.errors import PcalError

GEOREFERENCED = 1e4  # metres: coordinates beyond this are split into offset + remainder
NPY_COLUMNS = {3: "x y z", 4: "x y z label", 6: "x y z r g b", 7: "x y z r g b label"}
LAS_INSTALL_HINT = "pip install 'pcal[las]'"


# ----------------------------------------------------------------------------------------------
# small shared helpers


def existing_folder(path: str | os.PathLike, what: str = "dataset folder") -> Path:
    """``path`` as a Path, or :class:`PcalError` when it is not an existing folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise PcalError(f"{path}: {what} not found")
    if not path.is_dir():
        raise PcalError(f"{path}: {what} is not a folder")
    return path


def relative_coordinates(xyz: np.ndarray, force_offset: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """float32 coordinates and their float64 offset; an offset only for far-away coordinates.

    Non-finite points are left as they are (``prepare`` drops them) and do not affect the offset.
    """
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    finite = np.isfinite(xyz).all(axis=1)
    far = np.abs(xyz[finite]).max(initial=0.0) > GEOREFERENCED
    if not (force_offset or far):
        return xyz.astype(np.float32), np.zeros(3)
    if finite.all():
        return split_offset(xyz)
    _, offset = split_offset(xyz[finite])
    return (xyz - offset).astype(np.float32), offset


def colors_to_uint8(rgb: np.ndarray, scale: float | None = None) -> np.ndarray:
    """8-bit colours from 0..1 floats, 0..255 values or 16-bit values.

    ``scale`` multiplies the values when given; otherwise it is guessed: floats all within 0..1
    are scaled by 255, values above 255 are taken as 16-bit and divided by 257.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8 and scale is None:
        return rgb
    values = rgb.astype(np.float64)
    if scale is not None:
        values = values * scale
    elif np.issubdtype(rgb.dtype, np.floating) and np.nanmax(values, initial=0.0) <= 1.0:
        values = values * 255.0
    elif np.nanmax(values, initial=0.0) > 255.0:
        values = values / 257.0
    values = np.nan_to_num(values, nan=0.0)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def integer_labels(values: np.ndarray, path: Path, what: str = "labels") -> np.ndarray:
    """Raw label ids as int64; non-integer values or ids beyond int16 raise :class:`PcalError`."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        if not np.isfinite(values).all() or np.any(values != np.trunc(values)):
            raise PcalError(f"{path}: {what} hold non-integer values")
    elif values.dtype.kind not in "iub":
        raise PcalError(f"{path}: {what} are not numbers (dtype {values.dtype})")
    values = values.astype(np.int64)
    if len(values) and (values.min() < -32768 or values.max() > 32767):
        raise PcalError(f"{path}: {what} have ids outside -32768..32767")
    return values


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def scene_files(folder: Path, suffix: str) -> list[Path]:
    """The regular files ``folder/*<suffix>`` (not hidden), sorted by name."""
    return sorted(p for p in folder.glob(f"*{suffix}") if p.is_file() and not p.name.startswith("."))


# ----------------------------------------------------------------------------------------------
# NPY


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """``np.load`` without pickles (memory-mapped with ``mmap``); any failure becomes one
    :class:`PcalError` line."""
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise PcalError(f"{path}: file not found") from None
    except Exception as exc:  # truncated, not an .npy, object arrays, ...
        raise PcalError(f"{path}: not a readable .npy file ({_one_line(exc)})") from None
    if not isinstance(array, np.ndarray) or array.dtype.names is not None:
        raise PcalError(f"{path}: expected a plain numeric array, found a structured array")
    if array.dtype.kind not in "fiub":
        raise PcalError(f"{path}: expected a numeric array, found dtype {array.dtype}")
    return array


def read_label_npy(path: Path, n: int) -> np.ndarray:
    """Raw per-point ids from an ``.npy`` file of shape ``(n,)`` or ``(n, 1)``."""
    labels = load_npy(path)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (n,):
        raise PcalError(f"{path}: labels have shape {labels.shape}, expected ({n},) to match the points")
    return integer_labels(labels, path)


def read_npy(path: str | os.PathLike, label_path: str | os.PathLike | None = None,
             name: str | None = None, rgb_scale: float | None = None) -> Scene:
    """Read an ``(N, 3|4|6|7)`` array: ``x y z``, ``x y z label``, ``x y z r g b`` or
    ``x y z r g b label``; ``label_path`` (an ``(N,)`` array) gives or replaces the labels.

    Colours in 0..1 (floats), 0..255 or 16-bit are converted to uint8 (see :func:`colors_to_uint8`).
    """
    path = Path(path)
    array = load_npy(path)
    if array.ndim != 2 or array.shape[1] not in NPY_COLUMNS:
        allowed = ", ".join(f"{k} ({v})" for k, v in NPY_COLUMNS.items())
        raise PcalError(f"{path}: array of shape {array.shape}; expected (N, C) with C one of {allowed}")
    columns = array.shape[1]
    xyz, offset = relative_coordinates(array[:, :3])
    rgb = colors_to_uint8(array[:, 3:6], rgb_scale) if columns >= 6 else None
    label = integer_labels(array[:, -1], path) if columns in (4, 7) else None
    if label_path is not None:
        label = read_label_npy(Path(label_path), len(array))
    return Scene(name=name or path.stem, xyz=xyz, label=label, rgb=rgb, offset=offset)


# ----------------------------------------------------------------------------------------------
# LAS / LAZ


def read_las(path: str | os.PathLike, label_field: str | None = None, name: str | None = None) -> Scene:
    """Read a LAS or LAZ file with laspy: scaled x/y/z (kept exact through an offset), colours
    (16-bit scaled to 8-bit), intensity, near infrared (``nir``, point formats 8 and 10) and
    ``classification`` (or ``label_field``) as raw labels.

    Colours, intensity or nir that are zero for every point are treated as absent, and so is a
    ``classification`` that is 0 ("never classified") everywhere.
    """
    path = Path(path)
    laspy = _import_laspy(path)
    try:
        las = laspy.read(str(path))
    except Exception as exc:  # laspy, lazrs and numpy raise many types on bad input
        raise _las_error(path, exc) from None

    dimensions = set(las.point_format.dimension_names)
    xyz, offset = relative_coordinates(
        np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], axis=1), force_offset=True
    )
    rgb = None
    if {"red", "green", "blue"} <= dimensions:
        raw_rgb = np.stack([np.asarray(las[c]) for c in ("red", "green", "blue")], axis=1)
        if raw_rgb.any():
            rgb = colors_to_uint8(raw_rgb)
    intensity = _nonzero_float(las, "intensity", dimensions)
    nir = _nonzero_float(las, "nir", dimensions)
    field = label_field or "classification"
    if field not in dimensions:
        raise PcalError(f"{path}: no point field '{field}' (found: {', '.join(sorted(dimensions))})")
    label = integer_labels(np.asarray(las[field]), path, f"field '{field}'")
    if label_field is None and not label.any():
        label = None
    return Scene(name=name or path.stem, xyz=xyz, label=label, rgb=rgb, intensity=intensity, offset=offset,
                 nir=nir)


LAS_CHANNELS = {"rgb": ("red", "green", "blue"), "intensity": ("intensity",), "nir": ("nir",)}


def las_channels(path: str | os.PathLike, chunk: int = 50_000) -> frozenset[str]:
    """The input channels :func:`read_las` finds in a LAS/LAZ file (``rgb``, ``intensity``,
    ``nir``; one zero at every point is absent), reading ``chunk`` points at a time only until
    each declared channel has shown a non-zero value."""
    path = Path(path)
    laspy = _import_laspy(path)
    try:
        with laspy.open(str(path)) as reader:
            declared = set(reader.header.point_format.dimension_names)
            pending = {c: dims for c, dims in LAS_CHANNELS.items() if set(dims) <= declared}
            found: set[str] = set()
            for points in reader.chunk_iterator(chunk):
                found |= {c for c, dims in pending.items() if any(np.asarray(points[d]).any() for d in dims)}
                pending = {c: dims for c, dims in pending.items() if c not in found}
                if not pending:
                    break
    except Exception as exc:
        raise _las_error(path, exc) from None
    return frozenset(found)


def _nonzero_float(las, dimension: str, dimensions: set[str]) -> np.ndarray | None:
    """A per-point LAS dimension as float32, or None when it is missing or zero everywhere."""
    if dimension not in dimensions:
        return None
    values = np.asarray(las[dimension])
    return values.astype(np.float32) if values.any() else None


def _import_laspy(path: Path):
    try:
        import laspy
    except ImportError:
        raise PcalError(f"{path}: reading LAS/LAZ needs laspy: {LAS_INSTALL_HINT}") from None
    return laspy


def _las_error(path: Path, exc: Exception) -> PcalError:
    if isinstance(exc, FileNotFoundError):
        return PcalError(f"{path}: file not found")
    message = _one_line(exc)
    if "LazBackend" in message or "laz backend" in message.lower():
        return PcalError(f"{path}: reading LAZ needs a LAZ backend: {LAS_INSTALL_HINT}")
    return PcalError(f"{path}: not a readable LAS/LAZ file ({message})")


# ----------------------------------------------------------------------------------------------
# binary scans: KITTI-style velodyne/*.bin and mmdetection3d-style points/*.bin


def read_float32_rows(path: Path, columns: int) -> np.ndarray:
    """A little-endian float32 file of ``columns`` values per point, as an ``(N, columns)`` array."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise PcalError(f"{path}: file not found") from None
    row = 4 * columns
    if size % row:
        raise PcalError(f"{path}: {size} bytes is not a whole number of points "
                        f"({columns} float32 values each); the file is truncated or not a scan")
    try:
        return np.fromfile(path, dtype="<f4").reshape(-1, columns)
    except OSError as exc:
        raise PcalError(f"{path}: cannot read ({_one_line(exc)})") from None


def read_binary_labels(path: Path, dtype: str, n: int) -> np.ndarray:
    """``n`` per-point values of ``dtype`` from a raw binary file (size checked)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise PcalError(f"{path}: label file not found") from None
    itemsize = np.dtype(dtype).itemsize
    if size != n * itemsize:
        raise PcalError(f"{path}: {size} bytes, expected {n * itemsize} ({n} points x {itemsize} bytes); "
                        "labels and points do not match or the file is truncated")
    try:
        return np.fromfile(path, dtype=dtype)
    except OSError as exc:
        raise PcalError(f"{path}: cannot read ({_one_line(exc)})") from None


def read_kitti_bin(path: str | os.PathLike, label_path: str | os.PathLike | None = None,
                   learning_map: dict[int, int] | None = None, name: str | None = None) -> Scene:
    """A SemanticKITTI scan: ``float32 (N, 4)`` x y z intensity, and ``uint32`` labels whose low
    16 bits are the semantic id (the high 16 bits, the instance id, are dropped).

    With ``learning_map`` the semantic ids are mapped (ids not in it become ``IGNORE``);
    without it the raw semantic ids are returned.
    """
    path = Path(path)
    points = read_float32_rows(path, 4)
    label = None
    if label_path is not None:
        raw = read_binary_labels(Path(label_path), "<u4", len(points)) & 0xFFFF
        if learning_map is not None:
            label = map_labels(raw.astype(np.int64), learning_map)
        else:
            label = integer_labels(raw, Path(label_path))
    return Scene(name=name or path.stem, xyz=points[:, :3], label=label, intensity=points[:, 3])


def read_points_bin(path: str | os.PathLike, label_path: str | os.PathLike | None = None,
                    label_dtype: str = "<i8", rgb_scale: float | None = None,
                    name: str | None = None) -> Scene:
    """An mmdetection3d-style scan: ``float32 (N, 6)`` x y z r g b (+ raw per-point labels of
    ``label_dtype`` from ``label_path``, e.g. ``semantic_mask/*.bin`` int64 or ``*.label`` uint8)."""
    path = Path(path)
    points = read_float32_rows(path, 6)
    label = None
    if label_path is not None:
        label = integer_labels(read_binary_labels(Path(label_path), label_dtype, len(points)), Path(label_path))
    xyz, offset = relative_coordinates(points[:, :3])
    return Scene(name=name or path.stem, xyz=xyz, label=label,
                 rgb=colors_to_uint8(points[:, 3:6], rgb_scale), offset=offset)


# ----------------------------------------------------------------------------------------------
# S3DIS-style text: one point per line, "x y z r g b"

_NUMBER_BYTES = np.zeros(256, dtype=bool)
_NUMBER_BYTES[np.frombuffer(b"0123456789.-+eE", dtype=np.uint8)] = True
_SPACE_BYTES = np.zeros(256, dtype=bool)
_SPACE_BYTES[np.frombuffer(b" \t\r\n\v\f", dtype=np.uint8)] = True


def parse_number_rows(data: bytes, columns: int = 6) -> tuple[np.ndarray, int]:
    """Parse whitespace-separated numbers, ``columns`` per line, into a float64 array.

    Returns the rows and the number of lines skipped. Lines that do not hold exactly ``columns``
    numbers (a stray character, a missing value) are skipped; blank lines are ignored silently.
    The usual case is one C-speed ``np.loadtxt``; after a failure the bad lines are found with
    vectorised byte tests and dropped, and only if that still fails is the text parsed line by line.
    """
    if not data.strip():
        return np.zeros((0, columns)), 0
    with contextlib.suppress(ValueError):  # a malformed line: fall through to the byte-level parse
        rows = _loadtxt(data)
        if rows.shape[1] == columns:
            return rows, 0
    buf = np.frombuffer(data, dtype=np.uint8)
    newline = buf == 10
    line_of_byte = np.cumsum(newline, dtype=np.int64) - newline  # a newline ends its own line
    n_lines = int(line_of_byte[-1]) + 1
    space = _SPACE_BYTES[buf]
    odd = ~(space | _NUMBER_BYTES[buf])
    has_odd = np.bincount(line_of_byte[odd], minlength=n_lines) > 0
    token_start = ~space
    token_start[1:] &= space[:-1]
    tokens = np.bincount(line_of_byte[token_start], minlength=n_lines)
    keep = (tokens == columns) & ~has_odd
    skipped = int(np.count_nonzero(~keep & (tokens > 0)))
    kept = buf[keep[line_of_byte]].tobytes()
    if not kept.strip():
        return np.zeros((0, columns)), skipped
    try:
        return _loadtxt(kept), skipped
    except ValueError:  # tokens made of number characters that are no numbers ("1.2.3", "e")
        rows = []
        for line in kept.splitlines():
            try:
                rows.append([float(v) for v in line.split()])
            except ValueError:
                skipped += 1
        return np.asarray(rows, dtype=np.float64).reshape(-1, columns), skipped


def _loadtxt(data: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "input contained no data"
        return np.loadtxt(io.BytesIO(data), dtype=np.float64, ndmin=2, comments=None)
