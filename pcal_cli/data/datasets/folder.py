"""Any folder of ``.ply``, ``.las``, ``.laz`` and ``.npy`` scenes, with the user's class list.

Layout: scene files directly in the folder (all train), or in ``train/``, ``val/`` and ``test/``
subfolders, or any of these plus a split file. Classes come from ``classes``: a comma-separated
list of names (raw label ids 0..C-1) or a YAML file mapping raw ids (e.g. LAS ``classification``)
to class names. This module also reads split files (used by the ScanNet importer too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from pcal_cli.data.classes import default_colors, map_labels
from pcal_cli.data.datasets.base import SPLITS, DatasetSpec, RawDataset, RawScene, safe_scene_name
from pcal_cli.data.ply import read_ply
from pcal_cli.data.readers import existing_folder, read_las, read_npy
from pcal_cli.data.scene import IGNORE, Scene
from pcal_cli.errors import PcalError

SCENE_SUFFIXES = (".ply", ".las", ".laz", ".npy")
LABEL_SUFFIX = "_label.npy"
CLASS_FILE_KEYS = {"classes", "ids", "ignore_ids", "colors"}


@dataclass(frozen=True)
class ClassMap:
    """Class names and how raw ids map to them (``ids``: raw -> 0..C-1; ``ignore_ids`` -> -1)."""

    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ids: dict[int, int]
    ignore_ids: frozenset[int]
    source: str  # where the mapping came from, for messages

    def apply(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Map raw ids (negative = unlabelled) to classes; unmapped ids raise :class:`PcalError`."""
        raw = np.asarray(raw, dtype=np.int64)
        present = np.unique(raw[raw >= 0])
        known = np.fromiter(set(self.ids) | self.ignore_ids, dtype=np.int64)
        unknown = present[~np.isin(present, known)]
        if len(unknown):
            ids = ", ".join(str(int(u)) for u in unknown[:20]) + (", ..." if len(unknown) > 20 else "")
            raise PcalError(f"{path}: label ids outside the class list: {ids} "
                            f"(map them under 'ids' or list them under 'ignore_ids' in {self.source})")
        return map_labels(raw, self.ids, IGNORE)


def open_folder(raw: str | os.PathLike, classes: str | os.PathLike | list[str] | None = None,
                label_field: str | None = None, split_file: str | os.PathLike | None = None) -> RawDataset:
    """List the scenes of a folder of point files.

    ``classes``: ``"ground,vegetation,building"`` (raw ids 0..C-1) or a YAML file
    ``{classes: [...], ids: {raw: name}, ignore_ids: [...], colors: [[r, g, b], ...]}``.
    ``label_field``: the PLY field or LAS dimension holding labels (default: ``label``-like PLY
    fields, LAS ``classification``). ``split_file``: see :func:`read_split_file`.
    Input channels are those of the first scene (colours, intensity); a later scene missing one
    of them is an error, and channels the first scene lacks are dropped.
    """
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
    class_map.apply(first.label, path0)  # fail early on unmapped ids
    channels = tuple(c for c, present in (("rgb", first.rgb is not None),
                                          ("intensity", first.intensity is not None)) if present)
    spec = DatasetSpec(name="folder", classes=class_map.classes, colors=class_map.colors,
                       indoor=not np.any(first.offset), channels=channels,
                       profile="indoor" if not np.any(first.offset) else "aerial")
    scenes = [RawScene(split, name, _loader(path, name, label_field, class_map, channels, name0))
              for split, name, path in entries]
    return RawDataset(spec=spec, scenes=scenes, notes=notes)


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


def _loader(path: Path, name: str, label_field: str | None, class_map: ClassMap,
            channels: tuple[str, ...], first: str):
    def load() -> Scene:
        scene = read_scene_file(path, label_field, name)
        scene.label = class_map.apply(scene.label, path)
        for channel, what in (("rgb", "colours"), ("intensity", "intensity")):
            if channel in channels and getattr(scene, channel) is None:
                raise PcalError(f"{path}: scene has no {what}, but the first scene ({first}) has")
            if channel not in channels:
                setattr(scene, channel, None)
        return scene
    return load


def parse_classes(classes: str | os.PathLike | list[str] | tuple[str, ...] | None) -> ClassMap | None:
    """The class map from a comma-separated list, a list of names or a YAML file path."""
    if classes is None:
        return None
    if isinstance(classes, (list, tuple)):
        return _identity_map([str(c) for c in classes], "the class list")
    text = os.fspath(classes)
    path = Path(text).expanduser()
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        return read_class_file(path)
    return _identity_map([c.strip() for c in text.split(",")], "the class list")


def read_class_file(path: Path) -> ClassMap:
    """A YAML class file: ``classes`` (names), optional ``ids`` (raw id -> name or index; default
    0..C-1), ``ignore_ids`` (raw ids that become ignore) and ``colors`` (one [r, g, b] per class).
    A bare YAML list is a list of class names."""
    try:
        doc = yaml.safe_load(path.read_text())
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


# ----------------------------------------------------------------------------------------------
# split files (also used by the ScanNet importer)


def read_split_file(path: str | os.PathLike) -> dict[str, str]:
    """Scene name -> split from a split file.

    Accepted forms: a YAML mapping of split to names (``{train: [a, b], val: [c], test: [d]}``),
    a YAML mapping of name to split (``{a: train, c: val}``), or a text file with one
    ``<name> <split>`` pair per line (``#`` starts a comment). Splits are train, val or test.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PcalError(f"{path}: split file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PcalError(f"{path}: cannot read the split file ({str(exc).splitlines()[0]})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None
    assignment: dict[str, str] = {}
    if isinstance(doc, dict) and doc and all(str(k) in SPLITS for k in doc):
        for split, names in doc.items():
            if names is None:
                continue
            if not isinstance(names, list):
                raise PcalError(f"{path}: '{split}' must list scene names")
            for scene in names:
                _assign(assignment, str(scene), str(split), path)
    elif isinstance(doc, dict) and doc:
        for scene, split in doc.items():
            if str(split) not in SPLITS:
                raise PcalError(f"{path}: scene '{scene}' has split '{split}'; use train, val or test")
            _assign(assignment, str(scene), str(split), path)
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) != 2 or words[1] not in SPLITS:
                raise PcalError(f"{path}:{number}: expected '<scene> <train|val|test>' "
                                "or a YAML mapping {train: [...], val: [...], test: [...]}")
            _assign(assignment, words[0], words[1], path)
    if not assignment:
        raise PcalError(f"{path}: the split file names no scenes")
    return assignment


def _assign(assignment: dict[str, str], scene: str, split: str, path: Path) -> None:
    previous = assignment.setdefault(scene, split)
    if previous != split:
        raise PcalError(f"{path}: scene '{scene}' is in both '{previous}' and '{split}'")


def read_name_list(path: Path) -> list[str]:
    """Names from a text file with one name per line (blank lines and ``#`` comments skipped)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PcalError(f"{path}: cannot read the scene list ({str(exc).splitlines()[0]})") from None
    return [w for line in lines for w in line.split("#", 1)[0].split()[:1]]


def apply_assignment(entries: list, assignment: dict[str, str], notes: list[str], source: object) -> list:
    """Re-split ``entries`` (tuples whose first two items are split and name) by ``assignment``;
    scenes it does not name are dropped, and both kinds of mismatch are counted in ``notes``."""
    kept = [(assignment[e[1]], *e[1:]) for e in entries if e[1] in assignment]
    dropped = len(entries) - len(kept)
    if dropped:
        notes.append(f"{dropped} scene(s) not named in {source} were skipped")
    missing = len(set(assignment) - {e[1] for e in entries})
    if missing:
        notes.append(f"{missing} scene(s) named in {source} were not found")
    return kept


def _apply_split_file(entries, assignment, notes, split_file):
    kept = apply_assignment(entries, assignment, notes, split_file)
    if not kept:
        raise PcalError(f"{split_file}: names none of the scenes found")
    return kept
