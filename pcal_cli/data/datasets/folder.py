"""Any folder of ``.ply``, ``.las``, ``.laz`` and ``.npy`` scenes, with the user's class list.

Layout: scene files directly in the folder (all train), or in ``train/``, ``val/`` and ``test/``
subfolders, or any of these plus a split file. Classes come from ``classes``: a comma-separated
list of names (raw label ids 0..C-1), ``asprs`` (the standard LAS classification table) or a YAML
file mapping raw ids (e.g. LAS ``classification``) to class names. Input channels are those every
file has, or the ones asked for. Split files are read by :mod:`pcal_cli.data.datasets.splits`
(re-exported here).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from pcal_cli.data.classes import ASPRS_CLASSES, ASPRS_COLORS, ASPRS_IDS, ASPRS_IGNORE_IDS, default_colors, map_labels
from pcal_cli.data.datasets.base import CHANNELS, SPLITS, DatasetSpec, RawDataset, RawScene, safe_scene_name
from pcal_cli.data.datasets.splits import apply_assignment, read_name_list, read_split_file  # noqa: F401
from pcal_cli.data.ply import ply_channels, read_ply
from pcal_cli.data.readers import existing_folder, las_channels, load_npy, read_las, read_npy
from pcal_cli.data.scene import IGNORE, Scene
from pcal_cli.errors import PcalError, did_you_mean
from pcal_cli.yaml_io import load_yaml

SCENE_SUFFIXES = (".ply", ".las", ".laz", ".npy")
LABEL_SUFFIX = "_label.npy"
CLASS_FILE_KEYS = {"classes", "ids", "ignore_ids", "colors"}
BUILTIN_TABLES = ("asprs",)
CHANNEL_WORDS = {"rgb": "colours", "intensity": "intensity", "nir": "near infrared"}
MAX_RAW_ID = 32767  # raw labels are int16
_ID_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


@dataclass(frozen=True)
class ClassMap:
    """Class names and how raw ids map to them (``ids``: raw -> 0..C-1; ``ignore_ids`` -> -1)."""

    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ids: dict[int, int]
    ignore_ids: frozenset[int]
    source: str  # where the mapping came from, for messages
    table: str | None = None  # the built-in table it is ("ASPRS"), for messages

    def apply(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Map raw ids (negative = unlabelled) to classes; unmapped ids raise :class:`PcalError`."""
        raw = np.asarray(raw, dtype=np.int64)
        present = np.unique(raw[raw >= 0])
        known = np.fromiter(set(self.ids) | self.ignore_ids, dtype=np.int64)
        unknown = present[~np.isin(present, known)]
        if len(unknown):
            shown = [str(int(u)) for u in unknown[:20]]
            ids = ", ".join(shown) + (", ..." if len(unknown) > 20 else "")
            if self.table is not None:
                raise PcalError(f"{path}: label ids outside the class list: {ids} (not {self.table} standard "
                                f"classes: pass --ignore-ids {','.join(shown)} to ignore them, or give a YAML class map)")
            raise PcalError(f"{path}: label ids outside the class list: {ids} "
                            f"(map them under 'ids' or list them under 'ignore_ids' in {self.source})")
        return map_labels(raw, self.ids, IGNORE)

    def ignoring(self, extra: frozenset[int]) -> ClassMap:
        """The same map with the raw ids ``extra`` ignored too (``--ignore-ids``)."""
        both = sorted(extra & set(self.ids))
        if both:
            raise PcalError(f"--ignore-ids: raw id(s) {', '.join(map(str, both))} are classes in {self.source}")
        return dataclasses.replace(self, ignore_ids=self.ignore_ids | extra)


def open_folder(raw: str | os.PathLike, classes: str | os.PathLike | list[str] | None = None,
                label_field: str | None = None, split_file: str | os.PathLike | None = None,
                channels: str | Iterable[str] | None = None, ignore_ids: str | Iterable[int] | None = None) -> RawDataset:
    """List the scenes of a folder of point files.

    ``classes``: ``"ground,vegetation,building"`` (raw ids 0..C-1), ``"asprs"`` (the ASPRS LAS
    table, :data:`pcal_cli.data.classes.ASPRS_TABLE`) or a YAML file ``{classes: [...], ids:
    {raw: name}, ignore_ids: [...], colors: [[r, g, b], ...]}``; ``ignore_ids`` (``"64-67"``)
    adds raw ids that become ignore. ``label_field``: the PLY field or LAS dimension holding
    labels (default: ``label``-like PLY fields, LAS ``classification``). ``split_file``: see
    :func:`read_split_file`. ``channels``: ``"rgb,intensity"``, ``"none"``, ...; every file must
    have them. Without it the channels are those every file has, and the dropped ones are noted.
    """
    wanted = None if channels is None else parse_channels(channels)
    extra_ignored = None if ignore_ids is None else parse_id_list(ignore_ids)
    root = existing_folder(raw, "point cloud folder")
    split_dirs = [s for s in SPLITS if (root / s).is_dir()]
    folders = [(s, root / s) for s in split_dirs] if split_dirs else [("train", root)]
    entries: list[tuple[str, str, Path]] = []
    seen: dict[str, Path] = {}
    for split, folder in folders:
        for path in scene_paths(folder):
            name = safe_scene_name(path.stem)
            if name in seen:
                raise PcalError(f"{path}: scene name '{name}' is also used by {seen[name]}")
            seen[name] = path
            entries.append((split, name, path))
    if not entries:
        where = ", ".join(str(f) for _, f in folders)
        raise PcalError(f"{where}: no .ply, .las, .laz or .npy scenes found")

    notes: list[str] = []
    if split_file is not None:
        entries = _apply_split_file(entries, read_split_file(split_file), notes, split_file)
    class_map = parse_classes(classes)
    split0, name0, path0 = entries[0]
    first = read_scene_file(path0, label_field, name0)
    has_labels = bool(np.any(first.label >= 0))
    if class_map is None:
        if has_labels:
            raise PcalError(f"{path0}: the scenes have labels but no class list was given; "
                            "pass classes as 'name1,name2,...' or a YAML file")
        raise PcalError(f"{root}: no class list given; pass classes as 'name1,name2,...' or a YAML file")
    if extra_ignored is not None:
        class_map = class_map.ignoring(extra_ignored)
    class_map.apply(first.label, path0)  # fail early on unmapped ids
    found = {path0: scene_channels(first)} | {path: probe_channels(path) for _, _, path in entries[1:]}
    chosen = choose_channels(found, wanted, notes, root)
    spec = DatasetSpec(name="folder", classes=class_map.classes, colors=class_map.colors,
                       indoor=not np.any(first.offset), channels=chosen,
                       profile="indoor" if not np.any(first.offset) else "aerial")
    scenes = [RawScene(split, name, _loader(path, name, label_field, class_map, chosen))
              for split, name, path in entries]
    return RawDataset(spec=spec, scenes=scenes, notes=notes)


def parse_channels(value: str | Iterable[str]) -> tuple[str, ...]:
    """Input channels from ``"rgb,intensity"`` (or a list), in the canonical order; ``"none"``: none."""
    words = [w.strip() for w in (value.split(",") if isinstance(value, str) else map(str, value))]
    if "none" in words:
        if len(words) > 1:
            raise PcalError("--channels: 'none' cannot be combined with other channels")
        return ()
    for word in words:
        if word not in CHANNELS:
            raise PcalError(f"--channels: unknown channel '{word}' (choose from {', '.join(CHANNELS)} or none, "
                            f"comma-separated){did_you_mean(word, CHANNELS)}")
    return tuple(c for c in CHANNELS if c in words)


def parse_id_list(value: str | Iterable[int]) -> frozenset[int]:
    """Raw ids from ``"64,65"`` or ranges ``"64-67"`` (or a list of integers), for ``--ignore-ids``."""
    words = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    ids: set[int] = set()
    for word in words:
        match = _ID_RANGE.match(word.strip())
        low, high = (int(match.group(1)), int(match.group(2) or match.group(1))) if match else (0, -1)
        if not match or high < low or high > MAX_RAW_ID:
            raise PcalError(f"--ignore-ids: '{word.strip()}' is not a raw id (0..{MAX_RAW_ID}) "
                            "or a range such as 64-67")
        ids.update(range(low, high + 1))
    return frozenset(ids)


def scene_channels(scene: Scene) -> frozenset[str]:
    """The input channels a loaded scene has."""
    return frozenset(c for c, values in (("rgb", scene.rgb), ("intensity", scene.intensity), ("nir", scene.nir))
                     if values is not None)


def file_channels(path: Path) -> frozenset[str]:
    """The input channels of a scene file, as :func:`read_scene_file` would find them, without
    reading its points where the format allows (PLY fields, NPY shape; LAS until each is seen)."""
    suffix = path.suffix.lower()
    if suffix == ".ply":
        return ply_channels(path)
    if suffix in (".las", ".laz"):
        return las_channels(path)
    if suffix == ".npy":
        shape = load_npy(path, mmap=True).shape
        return frozenset({"rgb"}) if len(shape) == 2 and shape[1] >= 6 else frozenset()
    raise PcalError(f"{path}: unsupported file type (expected .ply, .las, .laz or .npy)")


def probe_channels(path: Path) -> frozenset[str] | None:
    """:func:`file_channels`, or None for a file that cannot be read: its scene's load then fails
    with the reader's own message, in its turn."""
    try:
        return file_channels(path)
    except PcalError:
        return None


def choose_channels(found: dict[Path, frozenset[str] | None], wanted: tuple[str, ...] | None,
                    notes: list[str], root: Path) -> tuple[str, ...]:
    """The dataset's input channels: ``wanted`` when given (a file lacking one is an error),
    else those every readable file has, with a note per channel some files lack."""
    known = {path: has for path, has in found.items() if has is not None}
    if wanted is not None:
        for path, has in known.items():
            missing = [c for c in wanted if c not in has]
            if missing:
                raise PcalError(_lacks(path, missing[0]))
        return wanted
    common = tuple(c for c in CHANNELS if all(c in has for has in known.values()))
    for channel in CHANNELS:
        lacking = [_shown(path, root) for path, has in known.items() if channel not in has]
        if channel not in common and len(lacking) < len(known):
            listed = ", ".join(lacking[:3]) + (f" and {len(lacking) - 3} more" if len(lacking) > 3 else "")
            notes.append(f"input channel {channel} dropped: {len(lacking)} of {len(known)} file(s) have no "
                         f"{CHANNEL_WORDS[channel]} ({listed}); --channels {channel} makes that an error")
    return common


def _lacks(path: Path, channel: str) -> str:
    return f"{path}: no {channel} ({CHANNEL_WORDS[channel]}) in this file, but the channels asked for include it"


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def scene_paths(folder: Path) -> list[Path]:
    """Scene files directly in ``folder``, sorted; ``<name>_label.npy`` beside ``<name>.npy`` is a
    label file, not a scene."""
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SCENE_SUFFIXES)
    names = {p.name for p in files}
    return [p for p in files
            if not (p.name.endswith(LABEL_SUFFIX) and p.name[: -len(LABEL_SUFFIX)] + ".npy" in names)]


def read_scene_file(path: Path, label_field: str | None = None, name: str | None = None) -> Scene:
    """Read one PLY / LAS / LAZ / NPY scene with its raw labels (``IGNORE`` when it has none)."""
    suffix = path.suffix.lower()
    if suffix == ".ply":
        return read_ply(path, label_field=label_field, name=name)
    if suffix in (".las", ".laz"):
        return read_las(path, label_field=label_field, name=name)
    if suffix == ".npy":
        label_path = path.with_name(path.stem + LABEL_SUFFIX)
        return read_npy(path, label_path if label_path.is_file() else None, name=name)
    raise PcalError(f"{path}: unsupported file type (expected .ply, .las, .laz or .npy)")


def _loader(path: Path, name: str, label_field: str | None, class_map: ClassMap, channels: tuple[str, ...]):
    def load() -> Scene:
        scene = read_scene_file(path, label_field, name)
        scene.label = class_map.apply(scene.label, path)
        for channel in CHANNELS:
            if channel in channels and getattr(scene, channel) is None:
                raise PcalError(_lacks(path, channel))
            if channel not in channels:
                setattr(scene, channel, None)
        return scene
    return load


def parse_classes(classes: str | os.PathLike | list[str] | tuple[str, ...] | None) -> ClassMap | None:
    """The class map from a comma-separated list, a list of names, a built-in table name
    (``asprs``) or a YAML file path."""
    if classes is None:
        return None
    if isinstance(classes, (list, tuple)):
        return _identity_map([str(c) for c in classes], "the class list")
    text = os.fspath(classes)
    if text.strip().lower() in BUILTIN_TABLES:
        return asprs_class_map()
    path = Path(text).expanduser()
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        return read_class_file(path)
    return _identity_map([c.strip() for c in text.split(",")], "the class list")


def asprs_class_map() -> ClassMap:
    """The ASPRS LAS classification table: standard codes as classes, 0/1/7/8/12/18 ignored."""
    return ClassMap(ASPRS_CLASSES, ASPRS_COLORS, dict(ASPRS_IDS), frozenset(ASPRS_IGNORE_IDS),
                    "the ASPRS table (--classes asprs)", table="ASPRS")


def read_class_file(path: Path) -> ClassMap:
    """A YAML class file: ``classes`` (names), optional ``ids`` (raw id -> name or index; default
    0..C-1), ``ignore_ids`` (raw ids that become ignore) and ``colors`` (one [r, g, b] per class).
    A bare YAML list is a list of class names."""
    try:
        doc = load_yaml(path.read_text(), str(path))
    except FileNotFoundError:
        raise PcalError(f"{path}: class file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PcalError(f"{path}: not a readable YAML class file ({str(exc).splitlines()[0]})") from None
    if isinstance(doc, list):
        doc = {"classes": doc}
    if not isinstance(doc, dict) or "classes" not in doc:
        raise PcalError(f"{path}: expected a mapping with a 'classes' list")
    unknown = set(map(str, doc)) - CLASS_FILE_KEYS
    if unknown:
        raise PcalError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(CLASS_FILE_KEYS))})")
    if not isinstance(doc["classes"], list):
        raise PcalError(f"{path}: 'classes' must be a list of names")
    base = _identity_map([str(c) for c in doc["classes"]], str(path))
    index = {c: i for i, c in enumerate(base.classes)}
    ids = base.ids
    if doc.get("ids") is not None:
        if not isinstance(doc["ids"], dict):
            raise PcalError(f"{path}: 'ids' must map raw ids to class names")
        ids = {}
        for raw_id, target in doc["ids"].items():
            raw_id = _int(raw_id, path, "ids")
            if raw_id in ids:
                raise PcalError(f"{path}: raw id {raw_id} is given twice under 'ids'")
            if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < len(index):
                ids[raw_id] = target
            elif str(target) in index:
                ids[raw_id] = index[str(target)]
            else:
                raise PcalError(f"{path}: raw id {raw_id} maps to '{target}', which is not in 'classes'")
    ignore_ids = doc.get("ignore_ids") or []
    if not isinstance(ignore_ids, list):
        raise PcalError(f"{path}: 'ignore_ids' must be a list of raw ids")
    ignore = frozenset(_int(v, path, "ignore_ids") for v in ignore_ids)
    both = sorted(ignore & set(ids))
    if both:
        raise PcalError(f"{path}: raw id(s) {', '.join(map(str, both))} are both mapped and ignored")
    colors = base.colors
    if doc.get("colors") is not None:
        values = doc["colors"]
        if (not isinstance(values, list) or len(values) != len(index)
                or not all(isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                           for c in values)):
            raise PcalError(f"{path}: 'colors' must list one [r, g, b] (0..255) per class")
        colors = tuple(tuple(c) for c in values)
    return ClassMap(base.classes, colors, ids, ignore, str(path))


def _identity_map(names: list[str], source: str) -> ClassMap:
    if not names or any(not n for n in names):
        raise PcalError(f"{source}: class names must be non-empty (got {names!r})")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PcalError(f"{source}: duplicate class name(s): {', '.join(duplicates)}")
    return ClassMap(tuple(names), tuple(default_colors(len(names))), {i: i for i in range(len(names))},
                    frozenset(), source)


def _int(value: object, path: Path, key: str) -> int:
    if isinstance(value, bool):
        raise PcalError(f"{path}: '{key}' holds {value!r}, not an integer id")
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise PcalError(f"{path}: '{key}' holds {value!r}, not an integer id") from None


def _apply_split_file(entries, assignment, notes, split_file):
    kept = apply_assignment(entries, assignment, notes, split_file)
    if not kept:
        raise PcalError(f"{split_file}: names none of the scenes found")
    return kept
