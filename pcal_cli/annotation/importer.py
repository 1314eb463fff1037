"""Import a person's labelled files as the next round, through the same commit as the oracle.

Only query points are taken. With ``allow_relabel``, corrections of labels known before are
taken too; classes given to points that were not asked are then ignored (they were not bought
from the budget). Every file is checked before anything is written: one problem is one
:class:`PcalError` naming the file, and no round folder or ledger line appears.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

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
from pcal_cli.rounds import LABELLING_FILE, LabelCommit, commit_labels, read_json, sync_ledger

TOLERANCE = 1e-3
"""Nearest-point matching radius (metres) when a file has no usable ``pid``."""
PID_CHECK = 1e-2
"""A pid whose point lies farther than this from the scene's point means a wrong file."""


@dataclass
class SceneImport:
    """A validated file: the scene's new labels and what was taken."""

    labels: np.ndarray
    file: str
    sha256: str
    matched_by: str
    labelled: int
    relabelled: int
    ignored: int


def import_labels(
    project: Project,
    round_index: int,
    in_dir: Path,
    *,
    allow_relabel: bool = False,
    label_field: str | None = None,
    tolerance: float = TOLERANCE,
) -> LabelCommit:
    """Read the labelled files in ``in_dir`` and commit round ``round_index + 1`` (source ``import``).

    Each ``<scene>.ply|.las|.laz`` is matched to its scene by ``pid`` (or by the nearest point
    within ``tolerance`` metres when the file has none) and checked: every query point holds a
    class id, every value is a class id or a reserved value, no point appears twice, known labels
    are kept (changed only with ``allow_relabel``), no class is given outside the query unless
    ``allow_relabel`` (then ignored). A file may hold only part of the scene if it holds every
    query point. Locking is the caller's job.
    """
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise PcalError(f"{in_dir}: no such folder")
    done = project.round_dir(round_index + 1) / LABELLING_FILE
    if done.is_file():  # a rerun: the same files imported already make it a no-op
        record = read_json(done, "labelling record")
        previous = record.get("import", {}).get("files", {})
        same = record.get("source") == "import" and bool(previous) and all(
            (in_dir / Path(e["file"]).name).is_file() and sha256_file(in_dir / Path(e["file"]).name) == e["sha256"]
            for e in previous.values())
        if same:
            sync_ledger(project)
            return LabelCommit(round_index + 1, 0, {}, skipped=True)
    queries = load_queries(project, round_index)
    manifest = _read_manifest(project, round_index, in_dir)
    files = _scene_files(in_dir, project, queries, manifest)
    scenes = query_scenes(project, round_index, queries)
    waiting = [n for n, q in scenes.items() if q.mask.any() and n not in files]
    if waiting:
        raise PcalError(f"{in_dir}: no labelled file for scene(s) {', '.join(waiting[:5])} "
                        f"(expected {waiting[0]}.ply or .las)")
    num_classes = project.config.num_classes
    exported = {name: e.get("sha256") for name, e in (manifest or {}).get("scenes", {}).items()}
    results = {
        name: _import_scene(read_label_file(path, label_field), scenes[name], num_classes, allow_relabel,
                            tolerance, exported.get(name))
        for name, path in files.items()
    }
    details = {"import": {
        "folder": str(in_dir.resolve()),
        "allow_relabel": allow_relabel,
        "files": {name: {"file": r.file, "sha256": r.sha256, "matched_by": r.matched_by, "labelled": r.labelled,
                         "relabelled": r.relabelled, "ignored_outside_query": r.ignored}
                  for name, r in results.items()},
    }}
    return commit_labels(
        project, round_index + 1, {name: r.labels for name, r in results.items()},
        source="import", unit=queries["unit"], units={name: len(scenes[name].units) for name in results},
        allow_relabel=allow_relabel, details=details,
    )


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


def _import_scene(data: LabelFile, q: QueryScene, num_classes: int, allow_relabel: bool,
                  tolerance: float, exported_sha: str | None) -> SceneImport:
    path, n = data.path, len(q.scene)
    xyz = _scene_frame(data.xyz, q.scene.xyz, q.scene.offset)
    index, matched_by = _match(data, xyz, q.scene.xyz, tolerance)
    values = data.labels
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

    present = np.zeros(n, dtype=bool)
    present[index] = True
    missing = q.mask & ~present
    if missing.any():
        raise PcalError(f"{path}: {int(missing.sum())} query point(s) are missing from the file "
                        f"({_examples(np.flatnonzero(missing))})")
    old = q.known[index].astype(np.int64)
    in_query = q.mask[index]
    known = old >= 0
    unlabelled = in_query & ~is_class
    if unlabelled.any():
        hint = ""
        if exported_sha is not None and sha256_file(path) == exported_sha:
            hint = "; the file is unchanged since the export"
        raise PcalError(f"{path}: {int(unlabelled.sum())} of {int(in_query.sum())} query point(s) have no class "
                        f"(still {QUERY} or empty; {_examples(index[unlabelled])}){hint}")
    erased = known & ~is_class
    if erased.any():
        raise PcalError(f"{path}: {int(erased.sum())} known label(s) were erased ({_examples(index[erased])}); "
                        "labels only grow")
    changed = known & is_class & (ids != old)
    if changed.any() and not allow_relabel:
        raise PcalError(f"{path}: {int(changed.sum())} known label(s) changed class outside the query "
                        f"({_examples(index[changed])}); pass --allow-relabel to accept corrections")
    outside = ~known & ~in_query & is_class
    if outside.any() and not allow_relabel:
        raise PcalError(f"{path}: {int(outside.sum())} point(s) outside the query were given a class "
                        f"({_examples(index[outside])}); only query points are taken (set them back to "
                        f"{NOT_ASKED}, or pass --allow-relabel to ignore them)")

    labels = q.known.copy()
    take = in_query | (changed if allow_relabel else np.zeros_like(changed))
    labels[index[take]] = ids[take]
    return SceneImport(labels, path.name, sha256_file(path), matched_by, int(in_query.sum()),
                       int(changed.sum()) if allow_relabel else 0, int(outside.sum()))


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
