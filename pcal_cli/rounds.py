"""The round engine's files: which files a round holds, how labels grow, the ledger.

    rounds/rNNN/labels/<scene>.npz   labels known in round N: a class id, -1 unknown, -2 asked
                                     but void (the point has no valid class, e.g. unannotated in
                                     the ground truth); one file per training scene with any
                                     asked point, stored sparsely (see pcal_cli.label_files;
                                     rounds of earlier versions hold dense int16 ``.npy`` files,
                                     still read)
    rounds/rNNN/labelling.json       how round N's labels were obtained (source, unit, counts)
    rounds/rNNN/model.pt             checkpoint trained on those labels
    rounds/rNNN/metrics.json         evaluation of model.pt, keyed by split
    rounds/rNNN/scores/              acquisition scores per scene (+ config.json)
    rounds/rNNN/queries.json         the units selected to be labelled next
    ledger.jsonl                     one line per scene and labelling event

A new round folder (its label files and ``labelling.json``) is built under a temporary name and
renamed into place, so it is complete or absent. The ledger is then brought in line with the
round folders, so an interruption between the two is repaired by the next command. Training and
scoring read only label files, never the ground truth stored in the PLYs.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pcal_cli.atomic import TMP_SUFFIX, fsync_dir, sha256_file, write_json, write_text
from pcal_cli.errors import PcalError
from pcal_cli.label_files import (SUFFIX, UNKNOWN, VOID, LabelFileError, known_count, label_file, label_files,
                                   read_label_file, write_label_file)
from pcal_cli.project import Project
from pcal_cli.layout import (FULL_DIR, LABELLING_FILE, LABELS_DIR, MANIFEST_FILE, MODEL_FILE, QUERIES_FILE,  # noqa: F401
                             ROUND_FILE, SCORES_DIR, TAGS_FILE)

#: What a closed round's manifest covers (metrics.json is not: evaluations may be added later).
MANIFEST_PATTERNS = (f"{LABELS_DIR}/*.npz", f"{LABELS_DIR}/*.npy", LABELLING_FILE, MODEL_FILE, QUERIES_FILE,
                     ROUND_FILE, f"{SCORES_DIR}/*", TAGS_FILE)
SOURCES = ("seed", "oracle", "import", "pseudo")  # pseudo: machine labels, never budget


def run_dir(project: Project, round_index: int | None) -> Path:
    """The folder of round ``round_index``, or of the full-supervision reference when ``None``."""
    return project.root / FULL_DIR if round_index is None else project.round_dir(round_index)


def labels_dir(project: Project, round_index: int) -> Path:
    return project.round_dir(round_index) / LABELS_DIR


def latest_round(project: Project) -> int:
    """The highest round present; none at all is a clear error."""
    rounds = project.rounds()
    if not rounds:
        raise PcalError(f"{project.root}: no labelling rounds yet (run 'pcal seed', or train with --full)")
    return rounds[-1]


def resolve_round(project: Project, round_index: int | None) -> int:
    """``round_index`` checked to exist, or the latest round when ``None``."""
    if round_index is None:
        return latest_round(project)
    if not project.round_dir(round_index).is_dir():
        raise PcalError(f"{project.root}: round {round_index} does not exist (rounds: {project.rounds() or 'none'})")
    return round_index


def load_labels(project: Project, round_index: int, scene: str, num_points: int) -> np.ndarray:
    """The labels of ``scene`` known in a round (all -1 when the scene has no label file), dense
    int16, from either label file format."""
    path = label_file(labels_dir(project, round_index), scene)
    if path is None:
        return np.full(num_points, UNKNOWN, dtype=np.int16)
    try:
        labels = read_label_file(path)
    except LabelFileError as exc:
        raise damaged_label_file(project, round_index, path, f"unreadable label file ({exc})") from None
    if labels.shape != (num_points,) or not np.issubdtype(labels.dtype, np.integer):
        raise damaged_label_file(project, round_index, path, f"expected {num_points} integer labels, found shape "
                                 f"{labels.shape} {labels.dtype}")
    num_classes = project.config.num_classes
    if labels.size and (labels.min() < VOID or labels.max() >= num_classes):
        raise damaged_label_file(project, round_index, path, f"label ids outside {VOID}..{num_classes - 1}")
    return labels.astype(np.int16)


def remake_command(project: Project, round_index: int) -> str | None:
    """The command that wrote round ``round_index`` (from its ``labelling.json``, else the
    ledger), to run again once the round folder is deleted; ``None`` when it cannot be told."""
    path = project.round_dir(round_index) / LABELLING_FILE
    try:
        record: Any = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):  # unreadable: fall back on the ledger below
        record = {}
    if not isinstance(record, dict) or not record.get("source"):
        try:
            entries = [e for e in read_ledger(project) if e.get("round") == round_index]
        except PcalError:
            entries = []
        record = {"source": entries[0].get("source"), "unit": entries[0].get("unit")} if entries else {}
    source, unit, where = record.get("source"), record.get("unit"), f" -p {project.root}"
    if source == "seed" and record.get("method"):
        cell = f" --cell {record['cell']:g}" if unit == "cell" and record.get("cell") else ""
        return (f"pcal seed{where} --method {record['method']} --unit {unit} --budget {record.get('budget')} "
                f"--seed {record.get('seed', 0)}{cell}")
    if source == "oracle":
        return f"pcal label{where} --oracle --unit tags" if unit == "tags" else \
            f"pcal label{where} --round {record.get('queries_round', round_index - 1)} --oracle"
    if source == "import":
        if unit == "tags":
            return f"pcal label{where} import-tags FILE"
        folder = (record.get("import") or {}).get("folder") or "DIR"
        options = " --partial" if (record.get("batch") or {}).get("open_points") else ""
        options += " --allow-relabel" if (record.get("import") or {}).get("allow_relabel") else ""
        return f"pcal label{where} import {folder}{options}"
    return None


def round_remedy(project: Project, round_index: int, file: str = "the file",
                 checksum_in: str = LABELLING_FILE) -> str:
    """How to get a damaged ``file`` of a round back, for the end of a one-line message: delete
    and rebuild the round when it is the latest (nothing is built on it yet), else restore it."""
    folder = project.round_dir(round_index)
    rounds = project.rounds()
    if rounds and rounds[-1] == round_index:
        command = remake_command(project, round_index)
        again = f"run '{command}' again" if command else "run the command that made it again"
        return f"round {round_index} is the latest and not closed: delete {folder} and {again}"
    return (f"round {round_index} is closed (later rounds were built on it): restore {file} from a backup "
            f"(its SHA-256 is in {folder / checksum_in})")


def damaged_label_file(project: Project, round_index: int, path: Path, problem: str) -> PcalError:
    """The one-line error for a damaged label file: which file, what is wrong, how to recover."""
    return PcalError(f"{path}: {problem}; {round_remedy(project, round_index, f'labels/{path.name}')}")


def load_tags(project: Project, round_index: int) -> dict[str, np.ndarray]:
    """``{scene: [C] bool}``: the scene tags known in a round (empty when the round has none; WSegPC)."""
    from pcal_cli.weak.tags import tags_from_json

    path = project.round_dir(round_index) / TAGS_FILE
    if not path.is_file():
        return {}
    return tags_from_json(read_json(path, "tags"), project.config.classes, source=str(path))


def labelled_scenes(project: Project, round_index: int) -> list[str]:
    """Training scenes that have a label file in the round."""
    found = label_files(labels_dir(project, round_index))
    return [name for name in project.scenes("train") if name in found]


def labelled_counts(project: Project, round_index: int) -> dict[str, int]:
    """Points asked per scene in a round, void ones included: what the budget counts (scenes
    without a label file are absent)."""
    folder = labels_dir(project, round_index)
    counts = {}
    for name in labelled_scenes(project, round_index):
        path = label_file(folder, name)
        try:
            counts[name] = known_count(path)
        except LabelFileError as exc:
            raise damaged_label_file(project, round_index, path, f"unreadable label file ({exc})") from None
    return counts


@dataclass
class LabelCommit:
    """What a labelling event added: the new round and per-scene counts."""

    round: int
    points: int
    scenes: dict[str, int]
    skipped: bool = False
    note: str = ""  # why nothing was added (a skipped rerun), for the command to print
    open_points: int = 0  # an import: points of its batch still to label


class LazyMapping(Mapping):
    """A read-only mapping over fixed keys whose values are computed when asked (not cached):
    label updates of thousands of scenes passed to :func:`commit_labels` one scene at a time."""

    def __init__(self, keys: Iterable[str], compute: Callable[[str], Any]) -> None:
        self._keys = list(keys)
        self._known = set(self._keys)
        self._compute = compute

    def __getitem__(self, key: str) -> Any:
        if key not in self._known:
            raise KeyError(key)
        return self._compute(key)

    def __contains__(self, key: object) -> bool:
        return key in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def commit_labels(
    project: Project,
    new_round: int,
    updates: Mapping[str, np.ndarray],
    *,
    source: str,
    unit: str,
    units: dict[str, int] | None = None,
    allow_relabel: bool = False,
    details: dict[str, Any] | None = None,
    extra_files: dict[str, dict[str, Any]] | None = None,
) -> LabelCommit:
    """Create round ``new_round`` = the previous round's labels updated with ``updates``.

    ``updates`` maps a scene to its full label array for the new round (-1 unknown); a
    :class:`LazyMapping` computes each scene's array when it is written, so memory holds one
    scene at a time. Labels only
    grow: a label known before must stay known, and keep its class unless ``allow_relabel``.
    The same function serves the seed, the oracle and a person's import (``source``).
    ``extra_files`` (name -> JSON content) are written into the new round folder with it.
    """
    if source not in SOURCES:
        raise PcalError(f"unknown label source '{source}'")
    target = project.round_dir(new_round)
    if target.exists():
        raise PcalError(f"{target}: round {new_round} already exists")
    previous = new_round - 1 if new_round > 0 else None
    if previous is not None and not project.round_dir(previous).is_dir():
        raise PcalError(f"round {previous} does not exist, cannot create round {new_round}")
    read_ledger(project)  # a damaged ledger is refused before anything is written
    train = project.scenes("train")
    unknown = sorted(set(updates) - set(train))
    if unknown:
        raise PcalError(f"labels for scenes outside the training split: {', '.join(unknown[:5])}")

    for leftover in project.rounds_dir.glob(f".r{new_round:03d}.*{TMP_SUFFIX}"):
        shutil.rmtree(leftover, ignore_errors=True)  # an interrupted attempt (callers hold the lock)
    staging = project.rounds_dir / f".r{new_round:03d}.{os.getpid()}{TMP_SUFFIX}"
    (staging / LABELS_DIR).mkdir(parents=True)
    try:
        added: dict[str, int] = {}
        void = 0  # asked points that turned out to have no valid class (counted in the budget)
        carried = labelled_scenes(project, previous) if previous is not None else []
        for name in train:
            if name not in updates and name not in carried:
                continue
            new = updates.get(name)
            old = None
            if name in carried:
                path = label_file(labels_dir(project, previous), name)
                try:
                    old = read_label_file(path).astype(np.int16)
                except LabelFileError as exc:
                    raise damaged_label_file(project, previous, path, f"unreadable label file ({exc})") from None
            if new is None:
                new = old
            new = np.asarray(new).astype(np.int16)
            if old is not None:
                _check_growth(name, old, new, allow_relabel)
            gained = int((new != UNKNOWN).sum()) - (0 if old is None else int((old != UNKNOWN).sum()))
            if gained:
                added[name] = gained
            void += int((new == VOID).sum()) - (0 if old is None else int((old == VOID).sum()))
            if (new != UNKNOWN).any():
                write_label_file(staging / LABELS_DIR / f"{name}{SUFFIX}", new)
        record = {
            "round": new_round,
            "source": source,
            "unit": unit,
            "points_added": int(sum(added.values())),
            "void_added": void,
            "scenes": {name: {"points": added.get(name, 0), "units": int((units or {}).get(name, 0))}
                       for name in sorted(set(added) | {n for n, u in (units or {}).items() if u})},
        }
        record.update(details or {})
        record["checksums"] = {f"labels/{p.name}": sha256_file(p)
                               for paths in label_files(staging / LABELS_DIR).values() for p in paths}
        write_json(staging / LABELLING_FILE, record)
        for file_name, content in (extra_files or {}).items():
            write_json(staging / file_name, content)
        carried_tags = previous is not None and (project.round_dir(previous) / TAGS_FILE).is_file()
        if carried_tags and not (staging / TAGS_FILE).exists():  # tags only grow, like labels
            shutil.copy2(project.round_dir(previous) / TAGS_FILE, staging / TAGS_FILE)
        if previous is not None:
            close_round(project, previous)  # the previous round's manifest, then the new round
        os.replace(staging, target)
        fsync_dir(project.rounds_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    sync_ledger(project)
    return LabelCommit(new_round, record["points_added"], added)


def manifest_files(folder: Path) -> list[Path]:
    """The files of a round folder its manifest covers (sorted; temporary names excluded)."""
    found = {p for pattern in MANIFEST_PATTERNS for p in folder.glob(pattern) if p.is_file()}
    return sorted(p for p in found if not p.name.startswith("."))


def close_round(project: Project, round_index: int) -> None:
    """Write ``manifest.json`` (SHA-256 of every file the round holds) in a round that is done."""
    folder = project.round_dir(round_index)
    files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in manifest_files(folder)}
    write_json(folder / MANIFEST_FILE, {"round": round_index, "files": files})


def _check_growth(name: str, old: np.ndarray, new: np.ndarray, allow_relabel: bool) -> None:
    if old.shape != new.shape:
        raise PcalError(f"scene {name}: {len(new)} labels given for {len(old)} points")
    known = old != UNKNOWN
    lost = known & (new == UNKNOWN)
    if lost.any():
        raise PcalError(f"scene {name}: {int(lost.sum())} known label(s) would be lost; labels only grow")
    changed = known & (new != old)
    if changed.any() and not allow_relabel:
        raise PcalError(f"scene {name}: {int(changed.sum())} known label(s) would change class "
                        "(pass --allow-relabel to accept corrections)")


def read_ledger(project: Project) -> list[dict[str, Any]]:
    """The ledger's entries (a missing ledger is empty)."""
    path = project.ledger_path
    if not path.is_file():
        return []
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise PcalError(f"{path}:{number}: not a JSON line") from None
    return entries


def sync_ledger(project: Project) -> int:
    """Append the entries of every round folder the ledger does not record yet; return how many."""
    entries = read_ledger(project)
    recorded = {e.get("round") for e in entries}
    new_lines = []
    for index in project.rounds():
        if index in recorded:
            continue
        path = project.round_dir(index) / LABELLING_FILE
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        overshoot = int(record.get("overshoot_points") or 0)  # the round's points beyond its budget
        for scene, counts in sorted(record["scenes"].items()):
            entry = {"round": index, "scene": scene, "unit": record["unit"], "units": counts["units"],
                     "points": counts["points"], "source": record["source"]}
            if overshoot:
                entry["round_overshoot_points"] = overshoot
            entry.update(_batch_entry(record, scene))
            new_lines.append(entry)
    if new_lines:
        text = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries + new_lines)
        write_text(project.ledger_path, text)
    return len(new_lines)


def _batch_entry(record: dict[str, Any], scene: str) -> dict[str, int]:
    """An import's ledger fields: the round whose queries it answers, the scene's points of that
    batch still open after it, and the whole batch's."""
    batch = record.get("batch")
    if record.get("source") != "import" or not isinstance(batch, dict):
        return {}
    files = (record.get("import") or {}).get("files") or {}
    return {"queries_round": int(record.get("queries_round", record["round"] - 1)),
            "open_points": int((files.get(scene) or {}).get("open_points", 0)),
            "batch_open_points": int(batch.get("open_points", 0))}


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object written by pcal; a missing or broken file is a clear error."""
    if not path.is_file():
        raise PcalError(f"{path}: no {what}")
    try:
        data = json.loads(path.read_text())
    except ValueError:
        raise PcalError(f"{path}: {what} is not valid JSON") from None
    if not isinstance(data, dict):
        raise PcalError(f"{path}: {what} is not a JSON object")
    return data
