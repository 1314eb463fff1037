"""Import a person's labelled files as the next round, through the same commit as the oracle.

Only query points are taken. With ``allow_relabel``, corrections of labels known before are
taken too; classes given to points that were not asked are then ignored (they were not bought
from the budget). With ``partial``, query points left without a class (255, or empty) stay
queried: the labelled ones go in as the next round, and a later import of the same folder adds
the rest as a further round (see :mod:`pcal_cli.annotation.batch`). Every file is checked before
anything is written: one problem is one :class:`PcalError` naming the file, and no round folder
or ledger line appears.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from pcal_cli.annotation.batch import Batch, batch_record, closed_by, find_batch
from pcal_cli.annotation.export import MANIFEST, MANIFEST_KIND, QueryScene, load_queries, query_scenes
from pcal_cli.annotation.formats import (
    LAS_SUFFIXES,
    NOT_ASKED,
    PLY_SUFFIXES,
    QUERY,
    LabelFile,
    read_label_file,
)
from pcal_cli.atomic import sha256_file
from pcal_cli.errors import PcalError
from pcal_cli.project import Project
from pcal_cli.rounds import UNKNOWN, LabelCommit, commit_labels, latest_round, load_labels, read_json, sync_ledger
from pcal_cli.units import unit_mask

TOLERANCE = 1e-3
"""Nearest-point matching radius (metres) when a file has no usable ``pid``."""
PID_CHECK = 1e-2
"""A pid whose point lies farther than this from the scene's point means a wrong file."""


@dataclass(frozen=True)
class ImportRules:
    """What an import accepts (the options of ``pcal label import``)."""

    num_classes: int
    allow_relabel: bool = False
    partial: bool = False
    tolerance: float = TOLERANCE


@dataclass
class SceneImport:
    """A validated file: the scene's new labels, what was taken and what is still open."""

    labels: np.ndarray
    file: str
    sha256: str
    matched_by: str
    labelled: int
    relabelled: int
    ignored: int
    open: np.ndarray  # the scene's query points still without a class after this import


def import_labels(
    project: Project,
    round_index: int,
    in_dir: Path,
    *,
    allow_relabel: bool = False,
    partial: bool = False,
    label_field: str | None = None,
    tolerance: float = TOLERANCE,
) -> LabelCommit:
    """Read the labelled files in ``in_dir`` and commit the next round (source ``import``).

    ``round_index`` is the round whose queries were exported (or a round an earlier import of
    them made). Each ``<scene>.ply|.las|.laz`` is matched to its scene by ``pid`` (or by the
    nearest point within ``tolerance`` metres when the file has none) and checked: every query
    point still open holds a class id (or, with ``partial``, stays open when it has none), every
    value is a class id or a reserved value, no point appears twice, known labels are kept
    (changed only with ``allow_relabel``), no class is given outside the query unless
    ``allow_relabel`` (then ignored). A file may hold only part of the scene if it holds every
    open query point. An import that adds nothing returns a skipped commit whose ``note`` says
    why (or raises when nothing was labelled at all). Locking is the caller's job.
    """
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise PcalError(f"{in_dir}: no such folder")
    batch = find_batch(project, round_index)
    rerun = _rerun(project, batch, in_dir)
    if rerun is not None:  # the same files imported already make it a no-op
        sync_ledger(project)
        return rerun
    closed = closed_by(project, batch)
    if closed is not None:
        raise PcalError(f"{in_dir}: the batch was exported for round {batch.origin}'s queries but the project is at "
                        f"round {latest_round(project)} ({closed}); export the latest queries with 'pcal label "
                        "export' and label those")
    origin = batch.origin
    queries = load_queries(project, origin)
    manifest = _read_manifest(project, origin, in_dir)
    files = _scene_files(in_dir, project, queries, manifest)
    scenes = query_scenes(project, origin, queries, labels_round=batch.labels_round)
    waiting = [n for n, q in scenes.items() if q.mask.any() and n not in files]
    if waiting:
        raise PcalError(f"{in_dir}: no labelled file for scene(s) {', '.join(waiting[:5])} "
                        f"(expected {waiting[0]}.ply or .las)")
    rules = ImportRules(project.config.num_classes, allow_relabel, partial, tolerance)
    exported = {name: e.get("sha256") for name, e in (manifest or {}).get("scenes", {}).items()}
    results = {
        name: _import_scene(read_label_file(path, label_field), scenes[name],
                            _labelled_earlier(project, batch, scenes[name], name), rules, exported.get(name))
        for name, path in files.items()
    }
    open_points = sum(int(r.open.sum()) for r in results.values())
    if not any(r.labelled or r.relabelled for r in results.values()):
        return _nothing_imported(batch, in_dir, open_points, results, exported)
    total = _batch_points(batch, scenes)
    details = {
        "queries_round": origin,
        "import": {
            "folder": str(in_dir.resolve()),
            "allow_relabel": allow_relabel,
            "files": {name: {"file": r.file, "sha256": r.sha256, "matched_by": r.matched_by, "labelled": r.labelled,
                             "relabelled": r.relabelled, "ignored_outside_query": r.ignored,
                             "open_points": int(r.open.sum())}
                      for name, r in results.items()},
        },
        "batch": {"import": len(batch.imports) + 1, "points": total, "labelled_points": total - open_points,
                  "open_points": open_points},
    }
    first = not batch.imports
    commit = commit_labels(
        project, batch.labels_round + 1, {name: r.labels for name, r in results.items()},
        source="import", unit=queries["unit"],
        units={name: _units_completed(scenes[name], r.open, first) for name, r in results.items()},
        allow_relabel=allow_relabel, details=details,
    )
    return replace(commit, open_points=open_points)


def _same_files(record: dict[str, Any], in_dir: Path) -> bool:
    """Whether ``in_dir`` holds exactly the files an import recorded (by SHA-256)."""
    previous = (record.get("import") or {}).get("files") or {}
    return record.get("source") == "import" and bool(previous) and all(
        (in_dir / Path(e["file"]).name).is_file() and sha256_file(in_dir / Path(e["file"]).name) == e["sha256"]
        for e in previous.values())


def _rerun(project: Project, batch: Batch, in_dir: Path) -> LabelCommit | None:
    """A skipped commit when one of the batch's imports took these very files, else ``None``."""
    for index, record in zip(reversed(batch.imports), reversed(batch.records)):
        if not _same_files(record, in_dir):
            continue
        latest = latest_round(project)
        now = "" if latest == index else f"; the project is now at round {latest}"
        left = batch.open_points if index == batch.labels_round else 0
        still = f"; {left:,} point(s) of the batch are still to label" if left else ""
        return LabelCommit(index, 0, {}, skipped=True, open_points=left or 0,
                           note=f"nothing imported: every labelled point of {in_dir} is already known in round "
                                f"{index} (imported as round {index} from the same files{now}){still}")
    return None


def _nothing_imported(batch: Batch, in_dir: Path, open_points: int, results: dict[str, SceneImport],
                      exported: dict[str, str | None]) -> LabelCommit:
    """The answer to an import that adds no label: a note after an earlier import of the batch
    (exit code 0), an error when nobody labelled anything yet."""
    last = batch.labels_round
    if batch.imports:
        still = f"; {open_points:,} point(s) of the batch are still to label" if open_points else ""
        return LabelCommit(last, 0, {}, skipped=True, open_points=open_points,
                           note=f"nothing imported: every labelled point of {in_dir} is already known in round "
                                f"{last} (imported as round {last} from the same batch){still}")
    if not open_points:
        raise PcalError(f"{in_dir}: nothing imported: round {last}'s queries have no point left to label")
    unchanged = all(exported.get(name) == r.sha256 for name, r in results.items())
    raise PcalError(f"{in_dir}: nothing imported: no query point has a class yet ({open_points:,} point(s) still "
                    f"{QUERY} or empty{'; the files are unchanged since the export' if unchanged else ''})")


def _labelled_earlier(project: Project, batch: Batch, q: QueryScene, name: str) -> np.ndarray:
    """The scene's points of the batch that an earlier import of it labelled (none on the first)."""
    if not batch.imports:
        return np.zeros(len(q.known), dtype=bool)
    before = load_labels(project, batch.origin, name, len(q.known))
    return unit_mask(q.unit_of_point, q.units) & (before == UNKNOWN) & (q.known != UNKNOWN)


def _units_completed(q: QueryScene, open_after: np.ndarray, first: bool) -> int:
    """Queried units of a scene that this import completed (no point left open): the ledger's
    units, so that a batch imported in parts counts each unit once."""
    before = len(q.units) if first else len(np.unique(q.unit_of_point[q.mask]))
    return before - len(np.unique(q.unit_of_point[open_after]))


def _batch_points(batch: Batch, scenes: dict[str, QueryScene]) -> int:
    """Points the batch asked: counted on its first import, then carried by each record."""
    if not batch.records:
        return sum(int(q.mask.sum()) for q in scenes.values())
    record = batch.records[-1]
    return int(batch_record(record).get("points", record.get("points_added", 0)))


def _read_manifest(project: Project, round_index: int, in_dir: Path) -> dict[str, Any] | None:
    """The export's manifest when present, checked against the project and round."""
    path = in_dir / MANIFEST
    if not path.is_file():
        return None
    manifest = read_json(path, "labelling manifest")
    if manifest.get("kind") != MANIFEST_KIND:
        raise PcalError(f"{path}: not a pcal labelling manifest")
    if manifest.get("round") != round_index:
        raise PcalError(f"{path}: files exported for round {manifest.get('round')}, not round {round_index}")
    classes = [c.get("name") for c in manifest.get("classes", []) if isinstance(c, dict)]
    if classes != project.config.classes:
        raise PcalError(f"{path}: exported with another class table than this project's")
    if manifest.get("reserved", {}) != {"query": QUERY, "not_asked": NOT_ASKED}:
        raise PcalError(f"{path}: reserved values differ from this pcal's ({QUERY}, {NOT_ASKED})")
    return manifest


def _scene_files(in_dir: Path, project: Project, queries: dict[str, Any],
                 manifest: dict[str, Any] | None) -> dict[str, Path]:
    """``scene -> file`` for the point cloud files in ``in_dir``; a file of another scene is refused."""
    queried = {e["scene"] for e in queries["queries"]}
    allowed = queried if manifest is None else queried & set(manifest.get("scenes", {}))
    files: dict[str, Path] = {}
    for path in sorted(in_dir.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in PLY_SUFFIXES + LAS_SUFFIXES:
            continue
        if path.stem not in allowed:
            where = "the export's manifest" if manifest is not None else f"round {queries.get('round')}'s queries"
            raise PcalError(f"{path}: scene '{path.stem}' is not in {where}; the file name must be the scene name")
        if path.stem in files:
            raise PcalError(f"{path}: a second file for scene '{path.stem}' (also {files[path.stem].name})")
        files[path.stem] = path
    if not files:
        raise PcalError(f"{in_dir}: no .ply, .las or .laz file to import")
    return files


def _import_scene(data: LabelFile, q: QueryScene, earlier: np.ndarray, rules: ImportRules,
                  exported_sha: str | None) -> SceneImport:
    """Check one file against its scene and take its labels (see :func:`import_labels`)."""
    path, n = data.path, len(q.scene)
    xyz = _scene_frame(data.xyz, q.scene.xyz, q.scene.offset)
    index, matched_by = _match(data, xyz, q.scene.xyz, rules.tolerance)
    ids, is_class = _class_ids(data, index, rules.num_classes)

    present = np.zeros(n, dtype=bool)
    present[index] = True
    missing = q.mask & ~present
    if missing.any():
        raise PcalError(f"{path}: {int(missing.sum())} query point(s) are missing from the file "
                        f"({_examples(np.flatnonzero(missing))})")
    old = q.known[index].astype(np.int64)
    in_query = q.mask[index]
    known = old >= 0
    given = earlier[index]  # labelled by an earlier import of the batch: a file may predate them
    unlabelled = in_query & ~is_class
    if unlabelled.any() and not rules.partial:
        raise PcalError(_unlabelled_message(path, index[unlabelled], int(in_query.sum()), exported_sha))
    erased = known & ~is_class & ~given
    if erased.any():
        raise PcalError(f"{path}: {int(erased.sum())} known label(s) were erased ({_examples(index[erased])}); "
                        "labels only grow")
    changed = known & is_class & (ids != old)
    if changed.any() and not rules.allow_relabel:
        if (changed & ~given).any():
            raise PcalError(f"{path}: {int((changed & ~given).sum())} known label(s) changed class outside the query "
                            f"({_examples(index[changed & ~given])}); pass --allow-relabel to accept corrections")
        raise PcalError(f"{path}: {int(changed.sum())} label(s) given by an earlier import of this batch changed "
                        f"class ({_examples(index[changed])}); pass --allow-relabel to accept corrections")
    outside = ~known & ~in_query & is_class
    if outside.any() and not rules.allow_relabel:
        raise PcalError(f"{path}: {int(outside.sum())} point(s) outside the query were given a class "
                        f"({_examples(index[outside])}); only query points are taken (set them back to "
                        f"{NOT_ASKED}, or pass --allow-relabel to ignore them)")

    labels = q.known.copy()
    answered = in_query & is_class
    take = answered | (changed if rules.allow_relabel else np.zeros_like(changed))
    labels[index[take]] = ids[take]
    still_open = q.mask.copy()
    still_open[index[answered]] = False
    return SceneImport(labels, path.name, sha256_file(path), matched_by, int(answered.sum()),
                       int(changed.sum()) if rules.allow_relabel else 0, int(outside.sum()), still_open)


def _class_ids(data: LabelFile, index: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The file's values as int64 ids and the mask of class ids; a value that is neither a class
    id nor "no class" (NaN, 255 to label, 254 not asked) is an error."""
    path, values = data.path, data.labels
    finite = np.isfinite(values)
    fractional = finite & (values != np.round(values))
    if fractional.any():
        raise PcalError(f"{path}: field '{data.label_field}' holds non-integer values "
                        f"(e.g. {values[fractional][0]:g}) at {_examples(index[fractional])}")
    ids = np.full(len(values), -(2**40), dtype=np.int64)
    small = finite & (np.abs(values) < 2**31)
    ids[small] = values[small]
    is_class = (ids >= 0) & (ids < num_classes)
    unset = ~finite | (ids == QUERY) | (ids == NOT_ASKED)
    bad = ~is_class & ~unset
    if bad.any():
        raise PcalError(f"{path}: class id {values[bad][0]:g} is not in 0..{num_classes - 1} "
                        f"({int(bad.sum())} point(s), {_examples(index[bad])}; "
                        f"{QUERY} = to label, {NOT_ASKED} = not asked)")
    return ids, is_class


def _unlabelled_message(path: Path, points: np.ndarray, asked: int, exported_sha: str | None) -> str:
    """Query points without a class, when the import is not ``--partial``."""
    head = (f"{path}: {len(points)} of {asked} query point(s) have no class (still {QUERY} or empty; "
            f"{_examples(points)})")
    if exported_sha is not None and sha256_file(path) == exported_sha:
        return f"{head}; the file is unchanged since the export (pass --partial to import the other files and " \
               "leave this one queried)"
    return f"{head}; label them, or pass --partial to import the labelled points and leave these queried"


def _scene_frame(xyz: np.ndarray, scene_xyz: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """File coordinates in the scene's frame: absolute ones (LAS, a georeferenced save) lose the offset."""
    if not np.any(offset != 0) or not len(xyz) or not len(scene_xyz):
        return xyz
    centre = (scene_xyz.min(axis=0).astype(np.float64) + scene_xyz.max(axis=0)) / 2
    mid = (xyz.min(axis=0) + xyz.max(axis=0)) / 2
    shifted = mid - offset
    return xyz - offset if np.abs(shifted - centre).max() < np.abs(mid - centre).max() else xyz


def _match(data: LabelFile, xyz: np.ndarray, scene_xyz: np.ndarray, tolerance: float) -> tuple[np.ndarray, str]:
    """Scene index of every row of the file, by pid when usable, else by nearest point."""
    path, n = data.path, len(scene_xyz)
    pid = data.pid
    if pid is not None and np.isfinite(pid).all():
        if np.any(pid != np.round(pid)) or (len(pid) and (pid.min() < 0 or pid.max() >= n)):
            raise PcalError(f"{path}: field pid holds values that are not point ids 0..{n - 1}")
        index = pid.astype(np.int64)
        _check_unique(path, index, "pid")
        if len(index):
            far = np.linalg.norm(xyz - scene_xyz[index], axis=1) > PID_CHECK
            if far.any():
                raise PcalError(f"{path}: {int(far.sum())} point(s) lie more than {PID_CHECK * 100:g} cm from "
                                f"the scene point their pid names (is this the file of another scene?)")
        return index, "pid"
    return match_nearest(path, xyz, scene_xyz, tolerance), "coordinates"


def match_nearest(path: Path, xyz: np.ndarray, scene_xyz: np.ndarray, tolerance: float = TOLERANCE) -> np.ndarray:
    """Scene index of each point of ``xyz``: its nearest scene point within ``tolerance``, each used once.

    Coincident scene points are shared out among coincident file points; a file point with no
    free scene point within ``tolerance`` is an error.
    """
    if not len(xyz):
        return np.zeros(0, dtype=np.int64)
    tree = cKDTree(np.asarray(scene_xyz, dtype=np.float64))
    dist, index = tree.query(xyz, k=1, distance_upper_bound=tolerance)
    far = ~np.isfinite(dist)
    if far.any():
        raise PcalError(f"{path}: {int(far.sum())} point(s) lie farther than {tolerance * 1000:g} mm from every "
                        f"scene point (e.g. row {int(np.flatnonzero(far)[0])}); was the cloud moved?")
    index = index.astype(np.int64)
    order = np.argsort(index, kind="stable")
    repeat = np.zeros(len(index), dtype=bool)
    repeat[order[1:]] = index[order[1:]] == index[order[:-1]]
    if repeat.any():
        taken = np.zeros(len(scene_xyz), dtype=bool)
        taken[index[~repeat]] = True
        k = min(len(scene_xyz), 16)
        for row in np.flatnonzero(repeat):
            d, near = tree.query(xyz[row], k=k, distance_upper_bound=tolerance)
            near = np.atleast_1d(near)[np.isfinite(np.atleast_1d(d))]
            free = near[~taken[near]]
            if not len(free):
                raise PcalError(f"{path}: row {int(row)} matches a scene point already matched "
                                "(duplicated points in the file?)")
            index[row] = free[0]
            taken[free[0]] = True
    return index


def _check_unique(path: Path, index: np.ndarray, what: str) -> None:
    counts = np.bincount(index) if len(index) else np.zeros(0, dtype=np.int64)
    twice = np.flatnonzero(counts > 1)
    if len(twice):
        raise PcalError(f"{path}: {len(twice)} {what} value(s) appear more than once ({_examples(twice)})")


def _examples(points: np.ndarray, limit: int = 3) -> str:
    """``point ids 3, 17, 29`` (the first few of ``points``)."""
    shown = ", ".join(str(int(p)) for p in np.sort(np.asarray(points))[:limit])
    more = "…" if len(points) > limit else ""
    return f"point id(s) {shown}{more}"
