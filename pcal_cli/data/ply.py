"""PLY scenes: pcal's own files and PLYs written by other tools (CloudCompare, Open3D, meshes).

pcal writes binary little-endian PLY with a ``vertex`` element: ``x y z`` float32, ``red green
blue`` uint8, ``intensity`` and/or ``nir`` float32, ``label`` int16 and ``region`` int32, and a header
comment ``pcal_offset X Y Z`` when coordinates are relative to an offset.
Reading accepts double coordinates, float colours in 0..1 or 0..255, CloudCompare's ``scalar_``
prefixes and extra fields (ignored).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from pcal_cli.atomic import atomic_open
from pcal_cli.data.scene import Scene, split_offset
from pcal_cli.errors import PcalError

COLOR_NAMES = (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))
INTENSITY_NAMES = ("intensity", "scalar_intensity", "scalar_Intensity", "reflectance", "remission")
NIR_NAMES = ("nir", "scalar_nir", "scalar_NIR", "near_infrared", "scalar_near_infrared")
LABEL_NAMES = ("label", "scalar_label", "scalar_Label", "class", "scalar_class", "semantic",
               "classification", "scalar_Classification")
REGION_NAMES = ("region", "scalar_region")
OFFSET_COMMENT = "pcal_offset"
HEADER_LIMIT = 1 << 16  # a PLY header longer than this is not one pcal can count cheaply


def _finite_extent(values: np.ndarray) -> float:
    """The largest finite absolute coordinate (NaN and infinite ones are dropped later, with a count)."""
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max(initial=0.0))


def read_ply(path: str | os.PathLike, label_field: str | None = None, name: str | None = None) -> Scene:
    """Read the ``vertex`` element of a PLY file into a :class:`Scene`.

    ``label_field`` names the ground-truth field when it is not one of the usual names; labels
    are returned as stored (mapping raw ids to classes is the importer's job).
    """
    path = Path(path)
    ply, vertex = _read_vertex(path)
    fields = vertex.dtype.names or ()
    if not all(axis in fields for axis in ("x", "y", "z")):
        raise PcalError(f"{path}: PLY vertices have no x/y/z fields (found: {', '.join(fields) or 'none'})")

    offset = _offset_from_comments(ply.comments)
    if max(_finite_extent(np.asarray(vertex[a])) for a in ("x", "y", "z")) > 1e4:
        # georeferenced: keep centimetres exact
        xyz, extra = split_offset(np.stack([np.asarray(vertex[a], dtype=np.float64) for a in ("x", "y", "z")],
                                           axis=1))
        offset = offset + extra
    else:  # column by column: no float64 copy of every point (a 50 M-point scan is large enough)
        xyz = np.empty((len(vertex), 3), dtype=np.float32)
        for column, axis in enumerate(("x", "y", "z")):
            xyz[:, column] = vertex[axis]

    label = None
    if label_field is not None:
        if label_field not in fields:
            raise PcalError(f"{path}: no field '{label_field}' (found: {', '.join(fields)})")
        label = _integer_field(vertex[label_field], path, label_field)
    else:
        found = next((f for f in LABEL_NAMES if f in fields), None)
        if found is not None:
            label = _integer_field(vertex[found], path, found)
    region_name = next((f for f in REGION_NAMES if f in fields), None)
    region = None if region_name is None else np.asarray(vertex[region_name]).astype(np.int32)
    intensity_name = next((f for f in INTENSITY_NAMES if f in fields), None)
    intensity = None if intensity_name is None else np.asarray(vertex[intensity_name], dtype=np.float32)
    nir_name = next((f for f in NIR_NAMES if f in fields), None)
    nir = None if nir_name is None else np.asarray(vertex[nir_name], dtype=np.float32)
    return Scene(
        name=name or path.stem,
        xyz=xyz,
        label=label,
        rgb=_colors(vertex, fields),
        intensity=intensity,
        region=region,
        offset=offset,
        nir=nir,
    )


def ply_channels(path: str | os.PathLike) -> frozenset[str]:
    """The input channels :func:`read_ply` finds in a PLY file (``rgb``, ``intensity``, ``nir``),
    from its vertex fields; binary files are memory-mapped, so no point is read."""
    path = Path(path)
    fields = set(_read_vertex(path)[1].dtype.names or ())
    found = {"rgb"} if any(set(names) <= fields for names in COLOR_NAMES) else set()
    found |= {"intensity"} if fields & set(INTENSITY_NAMES) else set()
    found |= {"nir"} if fields & set(NIR_NAMES) else set()
    return frozenset(found)


def _read_vertex(path: Path) -> tuple[PlyData, np.ndarray]:
    try:
        ply = PlyData.read(str(path))
        return ply, ply["vertex"].data
    except KeyError:
        raise PcalError(f"{path}: PLY file has no 'vertex' element") from None
    except Exception as exc:  # plyfile raises many types on malformed input
        raise PcalError(f"{path}: not a readable PLY file ({_one_line(exc)})") from None


def write_ply(path: str | os.PathLike, scene: Scene) -> None:
    """Write ``scene`` as binary little-endian PLY, atomically (temporary file + rename)."""
    columns: list[tuple[str, str, np.ndarray]] = [
        ("x", "f4", scene.xyz[:, 0]), ("y", "f4", scene.xyz[:, 1]), ("z", "f4", scene.xyz[:, 2])
    ]
    if scene.rgb is not None:
        columns += [(c, "u1", scene.rgb[:, i]) for i, c in enumerate(("red", "green", "blue"))]
    if scene.intensity is not None:
        columns.append(("intensity", "f4", scene.intensity))
    if scene.nir is not None:
        columns.append(("nir", "f4", scene.nir))
    columns += [("label", "i2", scene.label), ("region", "i4", scene.region)]
    data = np.empty(len(scene), dtype=[(name, "<" + kind) for name, kind, _ in columns])
    for name, _, values in columns:
        data[name] = values
    comments = ["written by pcal"]
    if np.any(scene.offset != 0):
        comments.append(f"{OFFSET_COMMENT} " + " ".join(repr(float(v)) for v in scene.offset))
    ply = PlyData([PlyElement.describe(data, "vertex")], text=False, byte_order="<", comments=comments)
    with atomic_open(path, "wb") as handle:
        ply.write(handle)


def ply_vertex_count(path: Path) -> int:
    """The ``element vertex N`` count of a PLY header."""
    try:
        with open(path, "rb") as handle:
            if handle.readline().strip() != b"ply":
                raise PcalError(f"{path}: not a PLY file")
            read = 0
            for line in handle:
                read += len(line)
                words = line.split()
                if words[:2] == [b"element", b"vertex"] and len(words) == 3 and words[2].isdigit():
                    return int(words[2])
                if words[:1] == [b"end_header"] or read > HEADER_LIMIT:
                    break
    except OSError as exc:
        raise PcalError(f"{path}: cannot read ({exc.strerror})") from None
    raise PcalError(f"{path}: PLY header has no 'element vertex' count")


def _offset_from_comments(comments: list[str]) -> np.ndarray:
    for comment in comments:
        parts = comment.split()
        if len(parts) == 4 and parts[0] == OFFSET_COMMENT:
            try:
                return np.array([float(v) for v in parts[1:]], dtype=np.float64)
            except ValueError:
                break
    return np.zeros(3)


def _colors(vertex: np.ndarray, fields: tuple[str, ...]) -> np.ndarray | None:
    names = next((n for n in COLOR_NAMES if all(c in fields for c in n)), None)
    if names is None:
        return None
    rgb = np.stack([np.asarray(vertex[c]) for c in names], axis=1)
    if rgb.dtype == np.uint8:
        return rgb
    rgb = rgb.astype(np.float64)
    if np.issubdtype(vertex.dtype[names[0]], np.floating) and rgb.max(initial=0.0) <= 1.0:
        rgb = rgb * 255.0
    elif rgb.max(initial=0.0) > 255.0:  # 16-bit colours
        rgb = rgb / 257.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _integer_field(values: np.ndarray, path: Path, name: str) -> np.ndarray:
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        if not finite.all() or np.any(values[finite] != np.round(values[finite])):
            raise PcalError(f"{path}: label field '{name}' holds non-integer values")
    values = values.astype(np.int64)
    if len(values) and (values.min() < -32768 or values.max() > 32767):
        raise PcalError(f"{path}: label field '{name}' has ids outside -32768..32767")
    return values


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
