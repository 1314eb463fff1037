"""Scene-level class tags, WSegPC's only supervision: build them, import a person's, serialise them.

A scene's tags are a ``[C]`` bool vector, ``True`` where class ``c`` occurs somewhere in the scene.
The oracle (:func:`tags_from_labels`) derives them from ground truth, as WSegPC's data loader
does (the release ignores label 255; pcal ignores every negative label).

Files a person can give to :func:`read_tags_file` (UTF-8, a byte-order mark is allowed). Scene
and class names are case-sensitive; whitespace around a name is stripped. Every scene named must
be a scene of the project, every class a class of the project; a scene may not appear twice.
Scenes the file does not mention are simply not returned (they stay untagged).

- CSV (``.csv``, ``.txt``; ``.tsv`` is tab-separated). Blank lines and lines starting with ``#``
  are skipped. An optional header line is recognised by its first cell (``scene``, ``scene_name``,
  ``name``, ``scan`` or ``room``, any case) when that cell is not itself a scene name.

  * long form, one row per scene: ``scene,classes`` with the classes separated by ``;`` or ``|``,
    e.g. ``office_1,chair;table|wall``. An empty second cell (or no second cell) means the scene
    has no class of the project at all (an all-False vector).
  * wide form, needs the header: ``scene,<class>,<class>,...`` then one 0/1 cell per class
    (``1/0``, ``true/false``, ``yes/no``, ``x``; an empty cell is 0). Classes without a column
    are absent. The wide form is chosen when every header cell after the first is a class name.

- YAML (``.yaml``, ``.yml``): a mapping ``scene: [class, class, ...]``; the value may also be one
  string with ``;``/``|`` separators, or empty/``[]`` for no class. Parsed with PyYAML's safe
  loader down to its node tree only (``yaml.compose``, nothing is constructed), so duplicate keys
  can be refused with their line and names keep their text (``001`` stays ``001``, ``yes`` stays
  ``yes``).
- JSON (``.json``): the document of :func:`tags_to_json`, or the same plain mapping as YAML.

:func:`tags_to_json` / :func:`tags_from_json` are the project's own representation (the lead
writes the file)::

    {"format": "pcal-tags", "version": 1, "classes": ["wall", "floor", ...],
     "scenes": {"office_1": ["wall", "chair"], "hallway_2": []}}

Class lists are written in class order; ``classes`` must equal the project's class list when read
back (a changed class table makes stored tags stale, so it is refused rather than remapped).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pcal_cli.errors import PcalError

#: ``format`` value of the JSON document written by :func:`tags_to_json`.
TAGS_FORMAT = "pcal-tags"
#: Version of that document.
TAGS_VERSION = 1
#: Characters separating class names inside one cell / string.
SEPARATORS = ";|"
#: First header cells of a CSV (compared case-insensitively).
HEADER_WORDS = frozenset({"scene", "scene_name", "scenename", "name", "scan", "room"})

_SPLIT = re.compile(r"[;|]")
_TRUE = frozenset({"1", "true", "yes", "y", "x"})
_FALSE = frozenset({"0", "false", "no", "n", ""})
_CSV_SUFFIXES = frozenset({".csv", ".txt", ".tsv"})
_YAML_SUFFIXES = frozenset({".yaml", ".yml"})


# ------------------------------------------------------------------ oracle


def tags_from_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``[C]`` bool: which classes occur in ``labels`` (any shape of integers; negatives ignored)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise PcalError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    labels = np.asarray(labels).reshape(-1)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise PcalError(f"labels must be integers, got {labels.dtype}")
    known = labels[labels >= 0].astype(np.int64, copy=False)
    if known.size and int(known.max()) >= num_classes:
        raise PcalError(f"label {int(known.max())} is out of range for {num_classes} classes")
    return np.bincount(known, minlength=int(num_classes)) > 0


# ------------------------------------------------------------------ helpers


def _suggest(name: str, choices: Sequence[str], list_them: bool = False) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or a short list of choices, or ``''``."""
    folded = [c for c in choices if c.casefold() == name.casefold()]
    close = folded or difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    if list_them and choices:
        shown = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
        return f" (known: {shown})"
    return ""


def _check_names(names: Sequence[str], what: str) -> list[str]:
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise PcalError(f"{what} must be a list of names")
    out = [str(n) for n in names]
    seen: set[str] = set()
    for n in out:
        if n in seen:
            raise PcalError(f"{what} lists '{n}' twice")
        seen.add(n)
    return out


def _split_classes(text: str) -> list[str]:
    return [t.strip() for t in _SPLIT.split(text) if t.strip()]


def _build(entries: list[tuple[str, list[str], str]], class_names: list[str], scene_names: list[str] | None,
           source: str) -> dict[str, np.ndarray]:
    """Validate ``(scene, class tokens, where)`` entries and turn them into tag vectors."""
    if not entries:
        raise PcalError(f"{source}: no scene tags in the file")
    index = {c: i for i, c in enumerate(class_names)}
    scenes = set(scene_names) if scene_names is not None else None
    first: dict[str, str] = {}
    out: dict[str, np.ndarray] = {}
    for scene, tokens, where in entries:
        scene = scene.strip()
        if not scene:
            raise PcalError(f"{source}: {where}: empty scene name")
        if scenes is not None and scene not in scenes:
            hint = " (separate the scene from its classes with ',')" if re.search(r"[;|\t]", scene) else ""
            raise PcalError(f"{source}: {where}: unknown scene '{scene}'"
                            f"{hint or _suggest(scene, scene_names or [])}")
        if scene in first:
            raise PcalError(f"{source}: scene '{scene}' is listed twice ({first[scene]} and {where})")
        first[scene] = where
        vec = np.zeros(len(class_names), dtype=bool)
        for token in tokens:
            name = token.strip()
            if not name:
                continue
            if name not in index:
                raise PcalError(f"{source}: {where}: unknown class '{name}' for scene '{scene}'"
                                f"{_suggest(name, class_names, list_them=True)}")
            vec[index[name]] = True
        out[scene] = vec
    return out


# ------------------------------------------------------------------ CSV


def _csv_entries(text: str, class_names: list[str], scene_names: list[str], delimiter: str,
                 source: str) -> list[tuple[str, list[str], str]]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=False)
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            cells = [c.strip() for c in row]
            while cells and not cells[-1]:
                cells.pop()  # trailing separators (spreadsheets add them)
            if not cells or cells[0].startswith("#"):
                continue
            rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise PcalError(f"{source}: line {reader.line_num}: bad CSV ({exc})") from None
    if not rows:
        return []
    scenes = set(scene_names)
    header: list[str] | None = None
    line, cells = rows[0]
    if cells[0] not in scenes and cells[0].casefold() in HEADER_WORDS:
        header = cells
        rows = rows[1:]
    classes = set(class_names)
    if header is not None and len(header) >= 2 and all(h in classes for h in header[1:]):
        seen: set[str] = set()
        for h in header[1:]:
            if h in seen:
                raise PcalError(f"{source}: line {line}: class column '{h}' appears twice")
            seen.add(h)
        entries = []
        for row_line, row in rows:
            if len(row) > len(header):
                raise PcalError(f"{source}: line {row_line}: {len(row)} cells but the header has {len(header)}")
            tokens = []
            for name, cell in zip(header[1:], row[1:] + [""] * (len(header) - len(row))):
                value = cell.casefold()
                if value in _TRUE:
                    tokens.append(name)
                elif value not in _FALSE:
                    raise PcalError(f"{source}: line {row_line}: '{cell}' in column '{name}' is not 0 or 1")
            entries.append((row[0], tokens, f"line {row_line}"))
        return entries
    if header is not None and len(header) > 2:
        bad = next(h for h in header[1:] if h not in classes)
        raise PcalError(f"{source}: line {line}: unknown class '{bad}' in the header"
                        f"{_suggest(bad, class_names, list_them=True)}")
    entries = []
    for row_line, row in rows:
        if len(row) > 2:
            raise PcalError(f"{source}: line {row_line}: expected 'scene,classes' (2 cells), got {len(row)}; "
                            f"separate the classes with ';' or '|'")
        entries.append((row[0], _split_classes(row[1]) if len(row) > 1 else [], f"line {row_line}"))
    return entries


# ------------------------------------------------------------------ YAML / JSON


def _yaml_entries(text: str, source: str) -> list[tuple[str, list[str], str]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PcalError(f"{source}: invalid YAML{where}") from None
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise PcalError(f"{source}: expected a mapping 'scene: [class, ...]'")
    null = "tag:yaml.org,2002:null"
    entries = []
    for key, value in root.value:
        where = f"line {key.start_mark.line + 1}"
        if not isinstance(key, yaml.ScalarNode) or key.tag == null:
            raise PcalError(f"{source}: {where}: a scene name must be a plain string")
        if isinstance(value, yaml.ScalarNode):
            tokens = [] if value.tag == null else _split_classes(value.value)
        elif isinstance(value, yaml.SequenceNode):
            tokens = []
            for item in value.value:
                if not isinstance(item, yaml.ScalarNode) or item.tag == null:
                    raise PcalError(f"{source}: line {item.start_mark.line + 1}: "
                                    f"scene '{key.value.strip()}': a class must be a plain name")
                tokens.append(item.value)
        else:
            raise PcalError(f"{source}: {where}: scene '{key.value.strip()}' needs a list of class names")
        entries.append((key.value, tokens, where))
    return entries


def _mapping_entries(scenes: Any, source: str) -> list[tuple[str, list[str], str]]:
    """Entries from a decoded JSON mapping ``scene -> [class, ...] | 'a;b' | null``."""
    if not isinstance(scenes, Mapping):
        raise PcalError(f"{source}: expected a mapping from scene to a list of class names")
    entries = []
    for scene, value in scenes.items():
        where = f"scene '{str(scene).strip()}'"
        if value is None:
            tokens: list[str] = []
        elif isinstance(value, str):
            tokens = _split_classes(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            tokens = list(value)
        else:
            raise PcalError(f"{source}: {where}: expected a list of class names")
        entries.append((str(scene), tokens, where))
    return entries


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    stripped: set[str] = set()
    for key, value in pairs:
        if key.strip() in stripped:
            raise PcalError(f"scene '{key.strip()}' is listed twice")
        stripped.add(key.strip())
        out[key] = value
    return out


# ------------------------------------------------------------------ public


def read_tags_file(path: str | Path, class_names: Sequence[str],
                   scene_names: Sequence[str]) -> dict[str, np.ndarray]:
    """A person's tags: ``{scene: [C] bool}`` for the scenes the file names, in file order.

    Formats (by suffix): CSV ``.csv``/``.txt``/``.tsv``, YAML ``.yaml``/``.yml``, JSON ``.json``;
    see the module docstring. Any problem (unknown scene or class, with the closest name
    suggested; a scene twice; an empty file; a malformed row) is one :class:`PcalError` naming
    the file and the line or scene.
    """
    path = Path(path)
    class_list = _check_names(class_names, "class_names")
    scene_list = _check_names(scene_names, "scene_names")
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in _CSV_SUFFIXES | _YAML_SUFFIXES | {".json"}:
        raise PcalError(f"{source}: unsupported tags file type '{path.suffix}' (use .csv, .tsv, .yaml, .yml or .json)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PcalError(f"{source}: tags file not found") from None
    except IsADirectoryError:
        raise PcalError(f"{source}: is a directory, not a tags file") from None
    except UnicodeDecodeError:
        raise PcalError(f"{source}: not a UTF-8 text file") from None
    except OSError as exc:
        raise PcalError(f"{source}: cannot read ({exc.strerror})") from None
    if not text.strip():
        raise PcalError(f"{source}: the tags file is empty")
    if suffix in _CSV_SUFFIXES:
        entries = _csv_entries(text, class_list, scene_list, "\t" if suffix == ".tsv" else ",", source)
    elif suffix in _YAML_SUFFIXES:
        entries = _yaml_entries(text, source)
    else:
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise PcalError(f"{source}: invalid JSON at line {exc.lineno}") from None
        except PcalError as exc:
            raise PcalError(f"{source}: {exc}") from None
        if isinstance(data, dict) and data.get("format") == TAGS_FORMAT:
            tags = tags_from_json(data, class_list, source=source)
            known = set(scene_list)
            for scene in tags:
                if scene not in known:
                    raise PcalError(f"{source}: unknown scene '{scene}'{_suggest(scene, scene_list)}")
            if not tags:
                raise PcalError(f"{source}: no scene tags in the file")
            return tags
        entries = _mapping_entries(data, source)
    return _build(entries, class_list, scene_list, source)


def tags_to_json(tags: Mapping[str, np.ndarray], class_names: Sequence[str]) -> dict[str, Any]:
    """The JSON-ready document ``{"format", "version", "classes", "scenes": {scene: [names]}}``."""
    class_list = _check_names(class_names, "class_names")
    scenes: dict[str, list[str]] = {}
    for scene, vec in tags.items():
        arr = np.asarray(vec)
        if arr.shape != (len(class_list),) or not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)):
            raise PcalError(f"tags of scene '{scene}' must be [{len(class_list)}] bool, got "
                            f"{arr.dtype} {arr.shape}")
        if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
            raise PcalError(f"tags of scene '{scene}' must be 0 or 1")
        scenes[str(scene)] = [class_list[i] for i in np.flatnonzero(arr)]
    return {"format": TAGS_FORMAT, "version": TAGS_VERSION, "classes": class_list, "scenes": scenes}


def tags_from_json(data: Any, class_names: Sequence[str], *, source: str = "tags") -> dict[str, np.ndarray]:
    """``{scene: [C] bool}`` from a :func:`tags_to_json` document, checked against ``class_names``."""
    class_list = _check_names(class_names, "class_names")
    if not isinstance(data, Mapping) or data.get("format") != TAGS_FORMAT:
        raise PcalError(f"{source}: not a pcal tags document (expected \"format\": \"{TAGS_FORMAT}\")")
    if data.get("version") != TAGS_VERSION:
        raise PcalError(f"{source}: unsupported tags version {data.get('version')!r} (expected {TAGS_VERSION})")
    stored = data.get("classes")
    if not isinstance(stored, list) or [str(c) for c in stored] != class_list:
        if isinstance(stored, list):
            diff = next((f"'{a}' vs '{b}'" for a, b in zip(stored, class_list) if str(a) != b),
                        f"{len(stored)} vs {len(class_list)} classes")
        else:
            diff = "no class list"
        raise PcalError(f"{source}: tags were written for another class list ({diff})")
    entries = _mapping_entries(data.get("scenes"), source)
    if not entries:
        return {}
    return _build(entries, class_list, None, source)
