"""Label files: the labels a round knows for one scene, stored sparsely and compressed.

    rounds/rNNN/labels/<scene>.npz   written by this version (below)
    rounds/rNNN/labels/<scene>.npy   written by earlier versions: a dense int16 array over all
                                     points (still read, never written)

A round knows few labels (0.1 % of a SemanticKITTI scan is ~120 of 120,000 points), so the dense
array (2 bytes per point: 5.5 GB per round for 23,000 scans) is mostly ``-1``. The ``.npz``
holds only the known points, in a deflated numpy archive (``np.load(path, allow_pickle=False)``
opens it):

    num_points     int64 scalar   points of the scene (the dense array's length)
    index_deltas   uint32 [K]     the known points' indices, sorted, stored as differences
                                  (the first index, then index[i] - index[i - 1] >= 1)
    labels         int8 [K]       their labels (int16 when a class id is over 127): a class id,
                                  or -2 (asked, void); never -1

Differences of sorted indices are small numbers that deflate well whatever the share labelled
(a fully labelled scene is a run of ones). The zip's members carry a fixed date, so equal labels
give equal bytes (the round checksums and the comparison of two runs rely on it). Writes are
atomic (temporary name + rename). Reading returns the same dense int16 array as the old format.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from pcal_cli.atomic import atomic_open

UNKNOWN = -1  # not known in this round
VOID = -2  # asked, no valid class: never asked again, never trained on
SUFFIX = ".npz"  # what pcal writes
LEGACY_SUFFIX = ".npy"  # dense int16 files of earlier versions: read only
SUFFIXES = (SUFFIX, LEGACY_SUFFIX)
KEYS = ("num_points", "index_deltas", "labels")
COMPRESS_LEVEL = 6
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed: equal labels, equal bytes


class LabelFileError(ValueError):
    """A label file that cannot be read or does not hold valid labels (the message says why)."""


def encode_labels(labels: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of the sparse format for a dense label array (``-1`` = unknown)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise LabelFileError(f"expected a 1-D integer label array, got {labels.dtype} {labels.shape}")
    if len(labels) > np.iinfo(np.uint32).max:
        raise LabelFileError(f"{len(labels)} points: more than a label file can index (2**32 - 1)")
    index = np.flatnonzero(labels != UNKNOWN)
    values = labels[index]
    if len(values) and (values.min() < np.iinfo(np.int16).min or values.max() > np.iinfo(np.int16).max):
        raise LabelFileError("label ids outside the int16 range")
    small = not len(values) or (values.min() >= np.iinfo(np.int8).min and values.max() <= np.iinfo(np.int8).max)
    deltas = np.diff(index, prepend=0) if len(index) else index
    return {"num_points": np.array(len(labels), dtype=np.int64),
            "index_deltas": deltas.astype(np.uint32),
            "labels": values.astype(np.int8 if small else np.int16)}


def decode_labels(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The dense int16 label array (``-1`` = unknown) of the sparse format's arrays, checked."""
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise LabelFileError(f"not a pcal label file (no {', '.join(missing)})")
    num_points, deltas, values = (np.asarray(arrays[k]) for k in KEYS)
    if num_points.shape != () or not np.issubdtype(num_points.dtype, np.integer) or int(num_points) < 0:
        raise LabelFileError(f"num_points must be one non-negative integer, found {num_points.dtype} "
                             f"{num_points.shape}")
    for key, array in (("index_deltas", deltas), ("labels", values)):
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise LabelFileError(f"{key} must be a 1-D integer array, found {array.dtype} {array.shape}")
    if len(deltas) != len(values):
        raise LabelFileError(f"{len(deltas)} indices for {len(values)} labels")
    index = np.cumsum(deltas, dtype=np.int64)
    if len(index) and (deltas.min() < 0 or (deltas[1:] < 1).any()):  # (the first may be 0)
        raise LabelFileError("point indices are not strictly increasing")
    if len(index) and index[-1] >= int(num_points):
        raise LabelFileError(f"point index {int(index[-1])} outside the scene's {int(num_points)} points")
    if len(values) and (values == UNKNOWN).any():
        raise LabelFileError(f"stores the unknown label {UNKNOWN} (only known labels are stored)")
    if len(values) and (values.min() < np.iinfo(np.int16).min or values.max() > np.iinfo(np.int16).max):
        raise LabelFileError("label ids outside the int16 range")
    dense = np.full(int(num_points), UNKNOWN, dtype=np.int16)
    dense[index] = values
    return dense


def write_label_file(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write ``labels`` (dense, ``-1`` unknown) as a sparse ``.npz`` label file, atomically.

    The bytes depend on the labels only (fixed member dates, fixed compression level)."""
    path = Path(path)
    if path.suffix != SUFFIX:
        raise ValueError(f"{path}: label files are written as {SUFFIX}")
    arrays = encode_labels(labels)
    with atomic_open(path, "wb") as handle:
        with zipfile.ZipFile(handle, "w") as archive:
            for key in KEYS:
                member = io.BytesIO()
                np.lib.format.write_array(member, arrays[key], allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, member.getvalue(), compresslevel=COMPRESS_LEVEL)


def read_label_file(path: str | os.PathLike) -> np.ndarray:
    """The dense labels of a label file: int16 from ``.npz``; from an old ``.npy`` the array as
    stored (callers check its dtype and length). Anything unreadable raises :class:`LabelFileError`."""
    path = Path(path)
    if path.suffix == LEGACY_SUFFIX:
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise LabelFileError(_load_failure(exc)) from None
        if not isinstance(array, np.ndarray):  # an .npz archive under an .npy name
            array.close()
            raise LabelFileError("a zip archive, not one .npy array")
        return array
    return decode_labels(_load_npz(path))


def known_count(path: str | os.PathLike) -> int:
    """How many points a label file knows (labelled or void), without building the dense array
    for the sparse format."""
    path = Path(path)
    if path.suffix == LEGACY_SUFFIX:
        return int((read_label_file(path) != UNKNOWN).sum())
    arrays = _load_npz(path)
    decode_labels(arrays)  # the same checks as a full read
    return len(arrays["labels"])


def label_file(folder: Path, scene: str) -> Path | None:
    """The label file of ``scene`` in a round's ``labels/`` folder (the new format first), or None."""
    for suffix in SUFFIXES:
        path = folder / f"{scene}{suffix}"
        if path.is_file():
            return path
    return None


def label_files(folder: Path) -> dict[str, list[Path]]:
    """Scene name -> its label files in ``folder`` (normally one; both formats for one scene is a
    damaged round that ``pcal check`` reports). Hidden (temporary) files are skipped."""
    found: dict[str, list[Path]] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if path.suffix in SUFFIXES and not path.name.startswith(".") and path.is_file():
            found.setdefault(path.stem, []).append(path)
    for paths in found.values():
        paths.sort(key=lambda p: SUFFIXES.index(p.suffix))
    return found


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if path.is_file() and not path.stat().st_size:
            raise LabelFileError("an empty file (0 bytes)") from None
        if isinstance(exc, zipfile.BadZipFile) and path.read_bytes()[:4] == b"PK\x03\x04":
            raise LabelFileError("a damaged zip archive: its table of contents is missing (cut short?)") from None
        raise LabelFileError(_load_failure(exc)) from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise LabelFileError("one .npy array, not a pcal .npz label file")
    try:
        with data:
            return {k: data[k] for k in KEYS if k in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise LabelFileError(_load_failure(exc)) from None


def _load_failure(exc: BaseException) -> str:
    """Why ``np.load`` failed, in one line; numpy's advice to allow pickles is never right here."""
    if isinstance(exc, ValueError) and "pickle" in str(exc):
        return "not a numpy file, or one of Python objects that pcal never loads"
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
