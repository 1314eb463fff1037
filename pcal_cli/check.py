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
completed (no ``labelling.json`` and not in the ledger). It never removes a completed round or a
label the ledger records.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

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
    sha256_file,
)

OK, WARNING, PROBLEM = "ok", "warning", "problem"


@dataclass
class Finding:
    check: str
    status: str
    detail: str


def check_project(project: Project, quick: bool = False) -> list[Finding]:
    """Every check's findings (one ``ok`` row per check that found nothing)."""
    findings: list[Finding] = []

    def report(check: str, problems: list[str], warnings: list[str] = (), summary: str = "") -> None:
        findings.extend(Finding(check, PROBLEM, p) for p in problems)
        findings.extend(Finding(check, WARNING, w) for w in warnings)
        if not problems and not warnings:
            findings.append(Finding(check, OK, summary))

    try:
        config = project.config
    except PcalError as exc:
        report("config", [str(exc)])
        return findings
    report("config", [], summary=f"{config.dataset}, {config.num_classes} classes")

    sizes, problems = {}, []
    for split in config.splits:
        for name in project.scenes(split):
            path = project.scene_path(split, name)
            try:
                sizes[(split, name)] = ply_vertex_count(path) if quick else len(read_ply(path))
            except (PcalError, OSError, ValueError) as exc:
                problems.append(f"{split}/{name}: {str(exc).splitlines()[0]}")
    report("scenes", problems, summary=f"{len(sizes)} readable" + (" (headers only)" if quick else ""))

    rounds = project.rounds()
    counts, problems, warnings = {}, [], []
    previous: dict[str, np.ndarray] = {}
    growth: list[str] = []
    for index in rounds:
        folder = project.round_dir(index)
        record_path = folder / LABELLING_FILE
        if not record_path.is_file():
            problems.append(f"round {index}: incomplete (no {LABELLING_FILE}); 'pcal check --repair' removes it")
            continue
        try:
            record = json.loads(record_path.read_text())
        except ValueError:
            problems.append(f"round {index}: {LABELLING_FILE} is not valid JSON")
            continue
        checksums = record.get("checksums", {})
        current: dict[str, np.ndarray] = {}
        for name, paths in label_files(labels_dir(project, index)).items():
            where = f"round {index}, {name}"
            if ("train", name) not in sizes:
                problems.append(f"{where}: labels for a scene that is not a readable training scene")
                continue
            if len(paths) > 1:
                problems.append(f"{where}: two label files ({', '.join(p.name for p in paths)}); one was "
                                "added by hand")
            path = paths[0]
            expected = checksums.get(f"labels/{path.name}")
            if expected is not None and sha256_file(path) != expected:
                problems.append(f"{where}: the label file changed after it was written (checksum)")
            try:
                labels = read_label_file(path)
            except LabelFileError as exc:
                problems.append(f"{where}: unreadable ({str(exc)[:80]})")
                continue
            if labels.dtype != np.int16 or labels.ndim != 1 or len(labels) != sizes[("train", name)]:
                problems.append(f"{where}: {labels.dtype} {labels.shape} labels for {sizes[('train', name)]} points")
                continue
            if labels.size and (labels.min() < VOID or labels.max() >= config.num_classes):
                problems.append(f"{where}: label ids outside {VOID}..{config.num_classes - 1}")
            current[name] = labels
            old = previous.get(name)
            if old is not None and len(old) == len(labels):
                known = old != UNKNOWN
                if (labels[known] == UNKNOWN).any():
                    growth.append(f"{where}: {int((labels[known] == UNKNOWN).sum())} label(s) of round "
                                  f"{index - 1} lost")
                elif (labels[known] != old[known]).any() and record.get("source") != "import":
                    growth.append(f"{where}: labels changed class")
        for name in set(previous) - set(current):
            growth.append(f"round {index}: the labels of {name} disappeared")
        counts[index] = {n: int((a != UNKNOWN).sum()) for n, a in current.items()}
        previous = current
    report("labels", problems, warnings, summary=f"{len(rounds)} round(s)")
    report("growth", growth, summary="labels only grow")

    problems = []
    try:
        ledger = read_ledger(project)
    except PcalError as exc:
        ledger = []
        problems.append(str(exc))
    recorded: dict[tuple[int, str], int] = {}
    for entry in ledger:
        if entry.get("source") == "pseudo":
            continue  # WSegPC's pseudo-labels live outside the rounds (wsegpc/)
        key = (int(entry.get("round", -1)), str(entry.get("scene")))
        recorded[key] = recorded.get(key, 0) + int(entry.get("points", 0))
    before: dict[str, int] = {}
    for index in sorted(counts):
        for name in sorted(set(counts[index]) | set(before)):
            added = counts[index].get(name, 0) - before.get(name, 0)
            if added != recorded.get((index, name), 0):
                problems.append(f"round {index}, {name}: the ledger says {recorded.get((index, name), 0)} points, "
                                f"the label files {added}")
        before = counts[index]
    stray = sorted({k[0] for k in recorded} - set(counts))
    if stray:
        problems.append(f"the ledger records round(s) {stray} that have no complete round folder")
    report("ledger", problems, summary=f"{sum(recorded.values()):,} points in {len(ledger)} entries")

    problems, warnings = [], []
    for index in rounds[:-1]:
        folder = project.round_dir(index)
        path = folder / MANIFEST_FILE
        if not path.is_file():
            warnings.append(f"round {index}: closed without a manifest (made before manifests existed?)")
            continue
        try:
            files = json.loads(path.read_text())["files"]
        except (ValueError, KeyError, TypeError):
            problems.append(f"round {index}: {MANIFEST_FILE} is unreadable")
            continue
        present = {p.relative_to(folder).as_posix() for p in manifest_files(folder)}
        for name, digest in sorted(files.items()):
            if not (folder / name).is_file():
                problems.append(f"round {index}: {name} is missing")
            elif sha256_file(folder / name) != digest:
                problems.append(f"round {index}: {name} changed after the round was closed")
        for name in sorted(present - set(files)):
            problems.append(f"round {index}: {name} was added after the round was closed")
    report("manifests", problems, warnings, summary=f"{max(len(rounds) - 1, 0)} closed round(s) verified")

    orphans = orphan_temporaries(project)
    report("temporary files", [f"{p.relative_to(project.root)}: left by an interrupted write" for p in orphans],
           summary="none")
    return findings


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
