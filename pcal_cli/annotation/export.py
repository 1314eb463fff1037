"""Export a round's queries as files a person labels (CloudCompare, or any PLY/LAS tool).

``query_points`` is the one definition of "the points to label" (the queried units' points that
are still unknown); the oracle and the export both use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pcal_cli import __version__
from pcal_cli.annotation.batch import find_batch
from pcal_cli.annotation.formats import (
    FLOAT32_EXACT,
    FORMATS,
    MAX_CLASSES,
    NOT_ASKED,
    QUERY,
    pid_columns,
    write_label_las,
    write_label_ply,
)
from pcal_cli.atomic import sha256_file, write_json
from pcal_cli.data.ply import read_ply
from pcal_cli.data.scene import Scene
from pcal_cli.errors import PcalError
from pcal_cli.project import Project
from pcal_cli.rounds import QUERIES_FILE, LazyMapping, load_labels, read_json
from pcal_cli.units import DEFAULT_CELL, check_unit, query_mask, unit_ids

MANIFEST = "manifest.json"
EXPORT_MARKER = ".pcal-export.json"  # written first, so an interrupted export can be re-run
MANIFEST_KIND = "pcal-labelling"


@dataclass
class QueryScene:
    """One queried scene: its points, round-N labels, queried unit ids and the query mask."""

    scene: Scene
    known: np.ndarray
    units: np.ndarray
    unit_of_point: np.ndarray
    mask: np.ndarray


def load_queries(project: Project, round_index: int) -> dict[str, Any]:
    """Round ``round_index``'s ``queries.json``, checked for the fields the labelling needs."""
    path = project.round_dir(round_index) / QUERIES_FILE
    queries = read_json(path, "query file")
    _check_queries(queries, round_index, str(path))
    return queries


def _check_queries(queries: dict[str, Any], round_index: int, where: str) -> None:
    if queries.get("round", round_index) != round_index:
        raise PcalError(f"{where}: queries of round {queries.get('round')}, expected round {round_index}")
    check_unit(queries.get("unit", ""))
    entries = queries.get("queries")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("scene"), str)
        and isinstance(e.get("unit"), int) and not isinstance(e.get("unit"), bool) for e in entries
    ):
        raise PcalError(f"{where}: 'queries' must be a list of {{scene, unit}} entries")


def query_scenes(project: Project, round_index: int, queries: dict[str, Any] | None = None,
                 scenes: dict[str, Scene] | None = None, *, labels_round: int | None = None) -> dict[str, QueryScene]:
    """Every queried scene (in training-split order) with its round-N labels and query mask.

    ``labels_round`` takes the known labels from a later round instead (the last import of a
    batch labelled in parts): the query mask is then what is still open."""
    lazy = lazy_query_scenes(project, round_index, queries, scenes, labels_round=labels_round)
    return {name: lazy[name] for name in lazy}


def lazy_query_scenes(project: Project, round_index: int, queries: dict[str, Any] | None = None,
                      scenes: dict[str, Scene] | None = None, *, labels_round: int | None = None) -> LazyMapping:
    """The queried scenes as a mapping that reads each scene when asked for it, so a round over
    thousands of scenes holds one at a time (see :func:`query_scenes`)."""
    if queries is None:
        queries = load_queries(project, round_index)
    else:
        _check_queries(queries, round_index, "queries")
    unit = queries["unit"]
    cell = float(queries.get("cell") or DEFAULT_CELL)
    selected: dict[str, list[int]] = {}
    for entry in queries["queries"]:
        selected.setdefault(entry["scene"], []).append(entry["unit"])
    train = project.scenes("train")
    outside = sorted(set(selected) - set(train))
    if outside:
        raise PcalError(f"queries name scene(s) outside the training split: {', '.join(outside[:5])}")

    def one(name: str) -> QueryScene:
        scene = (scenes or {}).get(name)
        if scene is None:
            scene = read_ply(project.scene_path("train", name), name=name)
        known = load_labels(project, round_index if labels_round is None else labels_round, name, len(scene))
        ids = unit_ids(scene, unit, cell)
        units = np.unique(np.asarray(selected[name], dtype=np.int64))
        return QueryScene(scene, known, units, ids, query_mask(ids, known, units))

    return LazyMapping([n for n in train if n in selected], one)


def query_points(project: Project, round_index: int, queries: dict[str, Any] | None = None,
                 *, scenes: dict[str, Scene] | None = None) -> dict[str, np.ndarray]:
    """Boolean mask of the points to label per queried scene: in a queried unit and still unknown.

    ``queries`` is a parsed ``queries.json`` (read from round ``round_index`` when ``None``);
    ``scenes`` may hold already-loaded scenes to avoid reading their PLYs again.
    """
    return {name: q.mask for name, q in query_scenes(project, round_index, queries, scenes).items()}


def export_queries(
    project: Project,
    round_index: int,
    out_dir: Path,
    fmt: str = "ply",
    predictions: dict[str, np.ndarray] | None = None,
    scores: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Write one file per scene with points to label, then ``manifest.json``; return the manifest.

    Whole scenes are exported (the context helps the person); ``predictions`` (class ids) and
    ``scores`` are optional per-point arrays per scene. Every file is written atomically. A
    folder holding another export is refused, except one of the same project, round and format
    (its files are rewritten). After a partial import, the batch's points still open are
    exported (``round_index`` may name the queries' round or a round its imports made).
    """
    if fmt not in FORMATS:
        raise PcalError(f"unknown export format '{fmt}' (choose from {', '.join(FORMATS)})")
    config = project.config
    if config.num_classes > MAX_CLASSES:
        raise PcalError(f"{config.num_classes} classes: labelling files hold at most {MAX_CLASSES} "
                        f"(ids {NOT_ASKED} and {QUERY} are reserved)")
    if not project.round_dir(round_index).is_dir():
        raise PcalError(f"{project.root}: round {round_index} does not exist")
    batch = find_batch(project, round_index)
    round_index, labels_round = batch.origin, batch.labels_round
    queries = load_queries(project, round_index)
    out_dir = Path(out_dir)
    _check_out_dir(project, round_index, fmt, out_dir)
    scenes = query_scenes(project, round_index, queries, labels_round=labels_round)

    todo = []  # check every input before the first file is written
    for name, q in scenes.items():
        if not q.mask.any():
            continue  # every queried point is known already
        pred = _per_point(predictions, name, len(q.scene), "predictions")
        score = _per_point(scores, name, len(q.scene), "scores")
        if pred is not None and len(pred) and (not np.issubdtype(pred.dtype, np.integer)
                                               or pred.min() < 0 or pred.max() >= config.num_classes):
            raise PcalError(f"predictions for scene {name}: expected class ids 0..{config.num_classes - 1}")
        todo.append((name, q, pred, score))

    if not todo:
        raise PcalError(f"round {round_index}: no point left to label (every queried point is known)")
    entries: dict[str, dict[str, Any]] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / EXPORT_MARKER, {"project": str(project.root.resolve()), "round": round_index,
                                         "format": fmt})
    for name, q, pred, score in todo:
        path = out_dir / f"{name}.{fmt}"
        fields = _write_scene(path, fmt, queries["unit"], q, pred, score)
        entries[name] = {
            "file": path.name,
            "points": len(q.scene),
            "query_points": int(q.mask.sum()),
            "known_points": int((q.known >= 0).sum()),
            "units": int(len(q.units)),
            "offset": [float(v) for v in q.scene.offset],
            "fields": fields,
            "sha256": sha256_file(path),
        }
    if not entries:
        raise PcalError(f"round {round_index}: no point left to label (every queried point is known)")
    manifest = {
        "kind": MANIFEST_KIND,
        "pcal_version": __version__,
        "project": str(project.root.resolve()),
        "dataset": config.dataset,
        "round": round_index,
        **({"labels_round": labels_round} if labels_round != round_index else {}),
        "unit": queries["unit"],
        "cell": float(queries.get("cell") or DEFAULT_CELL),
        "format": fmt,
        "classes": [{"id": i, "name": c, "color": list(config.colors[i])} for i, c in enumerate(config.classes)],
        "reserved": {"query": QUERY, "not_asked": NOT_ASKED},
        "coordinates": ("float32 relative to the scene offset (PLY header comment pcal_offset)" if fmt == "ply"
                        else "absolute (scene offset added), LAS scaled integers"),
        "scenes": entries,
    }
    write_json(out_dir / MANIFEST, manifest)
    (out_dir / EXPORT_MARKER).unlink(missing_ok=True)  # the manifest now says what the folder is
    return manifest


def _write_scene(path: Path, fmt: str, unit: str, q: QueryScene,
                 pred: np.ndarray | None, score: np.ndarray | None) -> list[str]:
    """Write one scene's labelling file; return the names of its fields."""
    scene, n, ply = q.scene, len(q.scene), fmt == "ply"
    classification = np.where(q.known >= 0, q.known, np.where(q.mask, QUERY, NOT_ASKED)).astype(np.uint8)
    # (name, type in PLY, type in LAS extra bytes, values); PLY integers that CloudCompare turns into
    # float32 anyway are written as float32 so that a file reads the same before and after it
    extra: list[tuple[str, str, str, np.ndarray]] = [(k, "f4", "u4", v) for k, v in pid_columns(n).items()]
    extra.append(("query", "u1", "u1", q.mask.astype(np.uint8)))
    extra.append(("Classification", "u1", "", classification))
    if unit in ("region", "cell") and q.unit_of_point.max(initial=0) < FLOAT32_EXACT:
        extra.append(("unit", "f4", "i4", np.where(q.mask, q.unit_of_point, -1)))
    if pred is not None:
        extra.append(("pred", "u1", "u1", pred))
    if score is not None:
        extra.append(("score", "f4", "f4", score))
    if not ply:
        las_extra = [(name, kind, values) for name, _, kind, values in extra if kind]
        write_label_las(path, scene.xyz.astype(np.float64) + scene.offset, classification, scene.rgb, las_extra)
        return ["classification"] + [name for name, _, _ in las_extra]
    columns = [(axis, "f4", scene.xyz[:, i]) for i, axis in enumerate("xyz")]
    if scene.rgb is not None:
        columns += [(c, "u1", scene.rgb[:, i]) for i, c in enumerate(("red", "green", "blue"))]
    columns += [(f"scalar_{name}", kind, values) for name, kind, _, values in extra]
    write_label_ply(path, columns, scene.offset)
    return [name for name, _, _ in columns]


def _per_point(arrays: dict[str, np.ndarray] | None, name: str, n: int, what: str) -> np.ndarray | None:
    if arrays is None or name not in arrays:
        return None
    values = np.asarray(arrays[name])
    if values.shape != (n,):
        raise PcalError(f"{what} for scene {name}: shape {values.shape}, expected ({n},)")
    return values


def _check_out_dir(project: Project, round_index: int, fmt: str, out_dir: Path) -> None:
    """Refuse a folder that holds another export (a same-round re-export is allowed)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise PcalError(f"{out_dir}: not a folder")
    manifest_path = out_dir / MANIFEST
    if not manifest_path.is_file() and (out_dir / EXPORT_MARKER).is_file():
        manifest_path = out_dir / EXPORT_MARKER  # an export interrupted before its manifest
    if manifest_path.is_file():
        old = read_json(manifest_path, "labelling manifest")
        same = (old.get("project") == str(project.root.resolve()) and old.get("round") == round_index
                and old.get("format") == fmt)
        if not same:
            raise PcalError(f"{out_dir}: holds the export of round {old.get('round')} "
                            f"({old.get('format')}); choose an empty folder")
        return
    data = [p.name for p in out_dir.iterdir() if p.suffix.lower() in (".ply", ".las", ".laz")]
    if data:
        raise PcalError(f"{out_dir}: already holds point cloud files ({', '.join(sorted(data)[:3])}); "
                        "choose an empty folder")
