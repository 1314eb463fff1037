"""``pcal check``: verify a project's integrity; ``--repair`` removes what an interruption left.

Checks, each reported as a row (``ok``, ``warning`` or ``problem``):

- ``config``: ``pcal.yaml`` is valid;
- ``scenes``: every listed scene file exists and is readable (``quick``: its header only);
- ``labels``: every round folder is complete (``labelling.json``), every label file (the sparse
  ``.npz``, or an int16 ``.npy`` of earlier versions; one per scene) holds its scene's length
  with ids in range, and matches the checksum its round recorded;
- ``growth``: labels only grow from round to round and never change class without a relabel;
- ``ledger``: the ledger's points per round and scene equal what the label files added;
- ``manifests``: every closed round (one with a later round) has a manifest whose SHA-256 sums
  match its files;
- ``temporary files``: no orphan temporary files or staging folders (``.*.tmp``).

``repair`` removes orphan temporary files and staging folders, and round folders that never
completed (no ``labelling.json`` and not in the ledger); :func:`repair_ledger` records the
complete rounds the ledger lacks. Neither removes a completed round or a label the ledger
records. Every problem says what is wrong and the command that repairs it, where one exists
(else how to recover: rebuild the latest round, or restore a file of a closed round).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pcal_cli.atomic import TMP_SUFFIX
from pcal_cli.data.ply import ply_vertex_count, read_ply
from pcal_cli.errors import PcalError
from pcal_cli.label_files import LabelFileError, label_files, read_label_file
from pcal_cli.project import Project
from pcal_cli.rounds import (
    LABELLING_FILE,
    MANIFEST_FILE,
    UNKNOWN,
    VOID,
    labels_dir,
    manifest_files,
    read_ledger,
    remake_command,
    round_remedy,
    sha256_file,
    sync_ledger,
)

OK, WARNING, PROBLEM = "ok", "warning", "problem"
REPAIR = "'pcal check --repair'"


@dataclass
class Finding:
    check: str
    status: str
    detail: str


@dataclass
class _Rounds:
    """What the label files of every round hold, as the later checks need it."""

    counts: dict[int, dict[str, int]] = field(default_factory=dict)  # known points per round and scene
    damaged: dict[int, set[str]] = field(default_factory=dict)  # scenes whose label file could not be used
    records: dict[int, dict[str, Any]] = field(default_factory=dict)  # readable labelling.json records


def check_project(project: Project, quick: bool = False) -> list[Finding]:
    """Every check's findings (one ``ok`` row per check that found nothing). Each problem says
    what is wrong and, where a command repairs it, which."""
    findings: list[Finding] = []

    def report(check: str, problems: list[str], warnings: list[str] = (), summary: str = "") -> None:
        findings.extend(Finding(check, PROBLEM, p) for p in problems)
        findings.extend(Finding(check, WARNING, w) for w in warnings)
        if not problems and not warnings:
            findings.append(Finding(check, OK, summary))

    try:
        config = project.config
    except PcalError as exc:
        report("config", [f"{exc}; correct pcal.yaml by hand (docs/project.md lists its fields)"])
        return findings
    report("config", [], summary=f"{config.dataset}, {config.num_classes} classes")

    sizes, problems = _scene_sizes(project, quick)
    report("scenes", problems, summary=f"{len(sizes)} readable" + (" (headers only)" if quick else ""))

    rounds = project.rounds()
    state = _Rounds()
    problems, growth = _check_label_files(project, sizes, state)
    report("labels", problems, summary=f"{len(rounds)} round(s)")
    report("growth", growth, summary="labels only grow")

    problems, entries, points = _check_ledger(project, state)
    report("ledger", problems, summary=f"{points:,} points in {entries} entries")

    problems, warnings = _check_manifests(project, rounds)
    report("manifests", problems, warnings, summary=f"{max(len(rounds) - 1, 0)} closed round(s) verified")

    orphans = orphan_temporaries(project)
    report("temporary files", [f"{p.relative_to(project.root)}: left by an interrupted write; {REPAIR} removes it"
                               for p in orphans], summary="none")
    return findings


def _scene_sizes(project: Project, quick: bool) -> tuple[dict[tuple[str, str], int], list[str]]:
    """Points of every readable scene (``quick``: from the header), and a problem per unreadable one."""
    sizes, problems = {}, []
    for split in project.config.splits:
        for name in project.scenes(split):
            path = project.scene_path(split, name)
            try:
                sizes[(split, name)] = ply_vertex_count(path) if quick else len(read_ply(path))
            except (PcalError, OSError, ValueError) as exc:
                problems.append(f"{split}/{name}: {str(exc).splitlines()[0]}; restore the scene file from a backup "
                                "('pcal prepare' writes scenes only into a project without rounds)")
    return sizes, problems


def _check_label_files(project: Project, sizes: dict[tuple[str, str], int],
                       state: _Rounds) -> tuple[list[str], list[str]]:
    """The ``labels`` and ``growth`` problems of every round; fills ``state``."""
    problems: list[str] = []
    growth: list[str] = []
    num_classes = project.config.num_classes
    previous: dict[str, np.ndarray] = {}
    for index in project.rounds():
        folder = project.round_dir(index)
        record_path = folder / LABELLING_FILE
        if not record_path.is_file():
            problems.append(f"round {index}: incomplete (no {LABELLING_FILE}); {REPAIR} removes it")
            continue
        try:
            record = json.loads(record_path.read_text())
        except ValueError:
            problems.append(f"{record_path}: not valid JSON; "
                            f"{round_remedy(project, index, record_path.name, MANIFEST_FILE)}")
            continue
        state.records[index] = record
        checksums = record.get("checksums", {})
        current: dict[str, np.ndarray] = {}
        damaged = state.damaged.setdefault(index, set())
        for name, paths in label_files(labels_dir(project, index)).items():
            path = paths[0]
            remedy = round_remedy(project, index, f"labels/{path.name}")
            if ("train", name) not in sizes:
                damaged.add(name)
                problems.append(_stray_labels(project, path, name))
                continue
            if len(paths) > 1:
                problems.append(_two_files(paths, checksums))
            try:
                labels = read_label_file(path)
            except LabelFileError as exc:
                damaged.add(name)
                problems.append(f"{path}: unreadable label file ({exc}); {remedy}")
                continue
            expected = checksums.get(f"labels/{path.name}")
            if expected is not None and sha256_file(path) != expected:
                problems.append(f"{path}: changed after it was written (checksum: not the SHA-256 {LABELLING_FILE} "
                                f"records); {remedy}")
            points = sizes[("train", name)]
            if labels.dtype != np.int16 or labels.ndim != 1 or len(labels) != points:
                damaged.add(name)
                problems.append(f"{path}: {labels.dtype} {labels.shape} labels for a scene of {points} points; "
                                f"{remedy}")
                continue
            if labels.size and (labels.min() < VOID or labels.max() >= num_classes):
                problems.append(f"{path}: label ids outside {VOID}..{num_classes - 1}; {remedy}")
            current[name] = labels
            growth += _growth(path, index, previous.get(name), labels, record.get("source"), remedy)
        for name in sorted(set(previous) - set(current) - damaged):
            growth.append(f"round {index}: the label file of {name} is missing (round {index - 1} has one); "
                          f"{round_remedy(project, index, f'labels/{name}.npz')}")
        state.counts[index] = {n: int((a != UNKNOWN).sum()) for n, a in current.items()}
        previous = current
    return problems, growth


def _stray_labels(project: Project, path: Path, name: str) -> str:
    if name in project.scenes("train"):
        return f"{path}: labels of training scene {name}, whose PLY is unreadable (see the scenes row)"
    return (f"{path}: labels of '{name}', which is not a training scene in pcal.yaml; move the file out of the "
            "round folder (added by hand, or the scene left the train split)")


def _two_files(paths: list[Path], checksums: dict[str, str]) -> str:
    """Two label files for one scene: the one the round did not record was added by hand."""
    recorded = [p for p in paths if f"labels/{p.name}" in checksums]
    extra = [p.name for p in paths if p not in recorded]
    advice = f"delete {extra[0]} (the round did not write it)" if len(recorded) == 1 else "delete the one added by hand"
    return f"{paths[0].parent}: two label files for {paths[0].stem} ({', '.join(p.name for p in paths)}); {advice}"


def _growth(path: Path, index: int, old: np.ndarray | None, labels: np.ndarray, source: str | None,
            remedy: str) -> list[str]:
    """Labels of the round before lost or changed in this round's file."""
    if old is None or len(old) != len(labels):
        return []
    known = old != UNKNOWN
    lost = int((labels[known] == UNKNOWN).sum())
    if lost:
        return [f"{path}: {lost} label(s) of round {index - 1} are unknown again (labels only grow); {remedy}"]
    if (labels[known] != old[known]).any() and source != "import":
        changed = int((labels[known] != old[known]).sum())
        return [f"{path}: {changed} label(s) of round {index - 1} changed class in a round made by '{source}' "
                f"(only an import with --allow-relabel corrects labels); {remedy}"]
    return []


def _check_ledger(project: Project, state: _Rounds) -> tuple[list[str], int, int]:
    """The ledger against the label files: problems, entries and points recorded."""
    problems = []
    try:
        ledger = read_ledger(project)
    except PcalError as exc:
        ledger = []
        problems.append(f"{exc}; the ledger is append-only: restore it from a backup, or correct the line by hand "
                        "(one JSON object per line)")
    recorded: dict[tuple[int, str], int] = {}
    for entry in ledger:
        if entry.get("source") == "pseudo":
            continue  # WSegPC's pseudo-labels live outside the rounds (wsegpc/)
        key = (int(entry.get("round", -1)), str(entry.get("scene")))
        recorded[key] = recorded.get(key, 0) + int(entry.get("points", 0))
    in_ledger = {r for r, _ in recorded}
    before: dict[str, int] = {}
    last = -1
    for index in sorted(state.counts):
        skip = state.damaged.get(index, set()) | state.damaged.get(last, set())
        gained = {n: state.counts[index].get(n, 0) - before.get(n, 0)
                  for n in sorted(set(state.counts[index]) | set(before)) if n not in skip}
        if index not in in_ledger and any(gained.values()):
            problems.append(f"round {index}: the ledger says 0 points, the label files gained "
                            f"{sum(gained.values()):,}: the round is not in the ledger (a command stopped before "
                            f"recording it); {REPAIR} records it")
        elif index in in_ledger:
            problems += [_ledger_mismatch(project, index, name, recorded.get((index, name), 0), added,
                                          state.records.get(index, {}))
                         for name, added in gained.items() if added != recorded.get((index, name), 0)]
        before, last = state.counts[index], index
    for index in sorted(in_ledger - set(state.counts) - set(state.damaged)):
        command = remake_command(project, index)
        again = f"run '{command}' again" if command else "run the command that made it again"
        problems.append(f"the ledger records round {index}, which has no complete round folder; {again} "
                        "(the same inputs give the labels the ledger counts)")
    return problems, len(ledger), sum(recorded.values())


def _ledger_mismatch(project: Project, index: int, name: str, ledger: int, added: int, record: dict[str, Any]) -> str:
    """One scene of one round whose ledger points differ from what its label files gained."""
    files = f"the label files gained {added}" if added >= 0 else f"the label files lost {-added}"
    scenes = record.get("scenes") if isinstance(record.get("scenes"), dict) else {}
    written = scenes[name].get("points") if isinstance(scenes.get(name), dict) else None
    head = f"round {index}, {name}: the ledger says {ledger} point(s), {files}"
    if written == added:
        return (f"{head} as {LABELLING_FILE} says: {project.ledger_path} was edited; set the points of its line for "
                f"round {index}, {name} back to {added}")
    if written is not None and written == ledger:
        return f"{head}, {LABELLING_FILE} says {written}: the label files changed (see the labels and growth rows)"
    return f"{head}: restore the round or the ledger from a backup"


def _check_manifests(project: Project, rounds: list[int]) -> tuple[list[str], list[str]]:
    """Every closed round's files against its manifest."""
    problems, warnings = [], []
    for index in rounds[:-1]:
        folder = project.round_dir(index)
        path = folder / MANIFEST_FILE
        if not path.is_file():
            warnings.append(f"round {index}: closed without a manifest (made before manifests existed?); nothing "
                            "to repair, its files are not verified")
            continue
        try:
            files = json.loads(path.read_text())["files"]
        except (ValueError, KeyError, TypeError):
            problems.append(f"{path}: unreadable; restore it from a backup (no command rebuilds it: its checksums "
                            "vouch for the closed round's files)")
            continue
        present = {p.relative_to(folder).as_posix() for p in manifest_files(folder)}
        restore = f"restore it from a backup ({MANIFEST_FILE} holds its SHA-256)"
        for name, digest in sorted(files.items()):
            if not (folder / name).is_file():
                problems.append(f"round {index}: {name} is missing from the closed round; {restore}")
            elif sha256_file(folder / name) != digest:
                problems.append(f"round {index}: {name} changed after the round was closed; {restore}")
        for name in sorted(present - set(files)):
            problems.append(f"round {index}: {name} was added after the round was closed; move it out of {folder}")
    return problems, warnings


def orphan_temporaries(project: Project) -> list[Path]:
    """Temporary files and staging folders (``.*.tmp``) anywhere in the project (links not followed)."""
    found = []
    stack = [project.root]
    while stack:
        folder = stack.pop()
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX):
                found.append(entry)
            elif entry.is_dir() and not entry.is_symlink():
                stack.append(entry)
    return sorted(found)


def repair_ledger(project: Project) -> list[int]:
    """Record in the ledger the complete rounds it lacks (a command stopped between renaming its
    round folder into place and the ledger update); return those rounds."""
    before = {e.get("round") for e in read_ledger(project)}
    sync_ledger(project)
    return sorted({e.get("round") for e in read_ledger(project)} - before)


def repair_project(project: Project) -> list[Path]:
    """Remove orphan temporaries and never-completed round folders; return what was removed."""
    removed = []
    for path in orphan_temporaries(project):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    in_ledger = {int(e.get("round", -1)) for e in read_ledger(project)}
    for index in project.rounds():
        folder = project.round_dir(index)
        if not (folder / LABELLING_FILE).is_file() and index not in in_ledger:
            shutil.rmtree(folder)
            removed.append(folder)
    return removed
