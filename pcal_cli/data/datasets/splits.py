"""Split files: a user's assignment of scenes to train / val / test, for every importer.

:func:`read_split_file` reads the file (YAML either way round, or ``<scene> <split>`` lines);
:func:`apply_assignment` re-splits an importer's entries by it; :func:`assign_split_file` does
both for a list of :class:`RawScene`.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from pcal_cli.data.datasets.base import SPLITS, RawScene
from pcal_cli.errors import PcalError
from pcal_cli.yaml_io import load_yaml


def read_split_file(path: str | os.PathLike) -> dict[str, str]:
    """Scene name -> split from a split file.

    Accepted forms: a YAML mapping of split to names (``{train: [a, b], val: [c], test: [d]}``),
    a YAML mapping of name to split (``{a: train, c: val}``), or a text file with one
    ``<name> <split>`` pair per line (``#`` starts a comment). Splits are train, val or test.
    Names are read as text (``00_000001`` stays ``00_000001``); a key given twice in the YAML
    forms is an error naming both lines.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PcalError(f"{path}: split file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PcalError(f"{path}: cannot read the split file ({str(exc).splitlines()[0]})") from None
    try:
        doc = load_yaml(text, str(path), names=True)
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


def assign_split_file(scenes: list[RawScene], split_file: str | os.PathLike, notes: list[str]) -> list[RawScene]:
    """``scenes`` re-split by ``split_file`` (see :func:`read_split_file`), in their order; scenes
    it does not name are skipped (counted in ``notes``), and naming none of them is an error."""
    entries = [(s.split, s.name, s.load) for s in scenes]
    kept = apply_assignment(entries, read_split_file(split_file), notes, split_file)
    if not kept:
        raise PcalError(f"{split_file}: names none of the scenes found")
    return [RawScene(split, name, load) for split, name, load in kept]
