"""The per-point arrays of ``pcal view``: one scene of a round, subsampled for drawing.

:func:`gather_scene` reads the scene's PLY, the round's labels, ``queries.json``,
``scores/<scene>.npz`` and (when present) runs ``model.pt`` over the scene, and returns a
:class:`SceneView` holding, for the shown points only, the ground truth, the prediction, the
acquisition score of each point's unit and which points the round queried. The other functions
are pure functions of arrays.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pcal_cli.data.datasets.base import SPLITS
from pcal_cli.data.ply import read_ply
from pcal_cli.data.scene import Scene
from pcal_cli.errors import PcalError, did_you_mean
from pcal_cli.project import CONFIG_NAME, Project
from pcal_cli.rounds import QUERIES_FILE, UNKNOWN, load_labels, read_json, resolve_round
from pcal_cli.units import DEFAULT_CELL, query_mask, unit_ids
from pcal_cli.catalogue import VIEW_MAX_POINTS as DEFAULT_MAX_POINTS
from pcal_cli.layout import MODEL_FILE, SCORES_DIR

SUBSAMPLE_SEED = 0
RIGHT, WRONG, NO_TRUTH = 0, 1, 2  # error codes

StageCallback = Callable[[int, int, str], None]  # (stages done, stages in all, what comes next)


@dataclass
class SceneView:
    """What the page draws of one scene: arrays over the shown points (``index`` into the scene).

    ``prediction``, ``scores`` and ``queried`` are ``None`` when the round has no ``model.pt``,
    no score file for the scene or no ``queries.json`` (or the scene is not a training scene).
    ``scores`` is NaN where the point's unit has no score (labelled, or not kept when scoring).
    """

    scene: str
    split: str
    round: int
    total_points: int
    index: np.ndarray
    xyz: np.ndarray
    truth: np.ndarray
    asked: np.ndarray
    prediction: np.ndarray | None = None
    scores: np.ndarray | None = None
    score_unit: str | None = None
    queried: np.ndarray | None = None
    query_unit: str | None = None
    query_units: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def shown(self) -> int:
        return len(self.index)

    @property
    def queried_points(self) -> int:
        return 0 if self.queried is None else int(self.queried.sum())

    @property
    def error(self) -> np.ndarray | None:
        return None if self.prediction is None else error_codes(self.truth, self.prediction)


def subsample(num_points: int, keep: np.ndarray, max_points: int, seed: int = SUBSAMPLE_SEED) -> np.ndarray:
    """Sorted indices of the points to draw: every point of ``keep``, then a seeded uniform sample
    of the others until ``max_points`` in all (more when ``keep`` alone holds more)."""
    if max_points < 1:
        raise PcalError(f"--max-points must be at least 1, got {max_points}")
    if num_points <= max_points:
        return np.arange(num_points)
    kept = np.flatnonzero(keep)
    others = np.flatnonzero(~np.asarray(keep, dtype=bool))
    room = min(len(others), max(0, max_points - len(kept)))
    picked = np.random.default_rng(seed).choice(others, size=room, replace=False)
    return np.sort(np.concatenate([kept, picked]))


def map_unit_scores(ids: np.ndarray, units: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The score of each point's unit (float64), NaN where the unit has no score."""
    out = np.full(len(ids), np.nan)
    if len(units) == 0:
        return out
    order = np.argsort(units, kind="stable")
    ordered = np.asarray(units, dtype=np.int64)[order]
    at = np.minimum(np.searchsorted(ordered, ids), len(ordered) - 1)
    hit = ordered[at] == ids
    out[hit] = np.asarray(scores, dtype=np.float64)[order][at[hit]]
    return out


def error_codes(truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """``RIGHT``, ``WRONG`` or ``NO_TRUTH`` (ground truth unknown) per point, uint8."""
    codes = np.where(truth == prediction, RIGHT, WRONG)
    return np.where(truth < 0, NO_TRUTH, codes).astype(np.uint8)


def queried_per_scene(record: dict[str, Any] | None) -> dict[str, int]:
    """Points selected per scene in a ``queries.json`` record (its ``points`` entries)."""
    counts: dict[str, int] = {}
    for query in (record or {}).get("queries", []):
        scene = str(query.get("scene"))
        counts[scene] = counts.get(scene, 0) + int(query.get("points") or 0)
    return counts


def default_scene(project: Project, record: dict[str, Any] | None) -> str:
    """The training scene with the most queried points in ``record``, else the first scene."""
    names = project.scenes("train")
    counts = queried_per_scene(record)
    queried = [name for name in names if counts.get(name, 0) > 0]
    if queried:
        return max(queried, key=lambda name: counts[name])  # ties: the first in pcal.yaml
    first = names or [name for split in SPLITS for name in project.scenes(split)]
    if not first:
        raise PcalError(f"{project.root}: the project has no scenes")
    return first[0]


def scene_split(project: Project, name: str) -> str:
    """The split that lists scene ``name`` (a scene the project does not list is an error)."""
    for split in SPLITS:
        if name in project.scenes(split):
            return split
    known = [n for split in SPLITS for n in project.scenes(split)]
    raise PcalError(f"{project.root}: no scene '{name}' in {CONFIG_NAME}{did_you_mean(name, known)}")


def read_queries(project: Project, round_index: int) -> dict[str, Any] | None:
    """The round's ``queries.json``, or ``None`` when it has none."""
    path = project.round_dir(round_index) / QUERIES_FILE
    return read_json(path, "queries") if path.is_file() else None


def queried_mask(scene: Scene, labels: np.ndarray, record: dict[str, Any], name: str) -> tuple[np.ndarray, int]:
    """The points of ``scene`` that ``record`` queries (unit selected, label still unknown), and
    how many units of the scene it selected."""
    unit = record.get("unit")
    if not isinstance(unit, str):
        raise PcalError(f"{QUERIES_FILE} of round {record.get('round')}: no 'unit'")
    selected = np.unique([int(q["unit"]) for q in record.get("queries", []) if q.get("scene") == name])
    if not len(selected):
        return np.zeros(len(scene), dtype=bool), 0
    ids = unit_ids(scene, unit, float(record.get("cell") or DEFAULT_CELL))
    return query_mask(ids, labels, selected.astype(np.int64)), len(selected)


def point_scores(project: Project, round_index: int, scene: Scene, name: str) -> tuple[np.ndarray, str]:
    """Each point's unit score from ``scores/<name>.npz`` (NaN: no score), and the unit kind."""
    folder = project.round_dir(round_index) / SCORES_DIR
    config = read_json(folder / "config.json", "score settings")
    unit = config.get("unit")
    if not isinstance(unit, str):
        raise PcalError(f"{folder / 'config.json'}: no 'unit'")
    path = folder / f"{name}.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            units, scores = data["units"], data["scores"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        raise PcalError(f"{path}: damaged or not a pcal score file (run 'pcal score --force')") from None
    ids = unit_ids(scene, unit, float(config.get("cell") or DEFAULT_CELL))
    return map_unit_scores(ids, units, scores), unit


def predict_points(project: Project, round_index: int, scene: Scene, device: str = "auto") -> np.ndarray:
    """The class predicted for every point of ``scene`` by the round's ``model.pt`` (int16)."""
    from pcal_cli.training.checkpoint import load_model
    from pcal_cli.training.inference import predict_scene
    from pcal_cli.training.supervised import resolve_device

    torch_device = resolve_device(device)
    config = project.config
    model, state = load_model(project.round_dir(round_index) / MODEL_FILE, torch_device, classes=config.classes,
                              channels=config.channels)
    ckpt = state["config"]
    prediction = predict_scene(model, scene, config.channels, ckpt["voxel_size"], config.num_classes, torch_device)
    return prediction.point_labels


def gather_scene(project: Project, round_index: int | None = None, scene_name: str | None = None, *,
                 max_points: int = DEFAULT_MAX_POINTS, device: str = "auto", seed: int = SUBSAMPLE_SEED,
                 on_stage: StageCallback | None = None) -> SceneView:
    """The arrays of one scene in a round (default: the latest round and the training scene with
    the most queried points). A round with nothing to show beyond the ground truth (no
    ``model.pt``, no scores, no queries for the scene) is an error, checked before any work."""
    if max_points < 1:
        raise PcalError(f"--max-points must be at least 1, got {max_points}")
    index = resolve_round(project, round_index)
    folder = project.round_dir(index)
    record = read_queries(project, index)
    name = scene_name if scene_name is not None else default_scene(project, record)
    split = scene_split(project, name)
    path = project.scene_path(split, name)
    if not path.is_file():
        raise PcalError(f"{path}: scene listed in {CONFIG_NAME} is missing")
    training = split == "train"
    has_model = (folder / MODEL_FILE).is_file()
    has_scores = training and (folder / SCORES_DIR / f"{name}.npz").is_file()
    has_queries = training and record is not None
    if not (has_model or has_scores or has_queries):
        lacking = f"no {MODEL_FILE}, no scores and no {QUERIES_FILE}" if training else \
            f"no {MODEL_FILE} (a {split} scene has no scores or queries)"
        raise PcalError(f"round {index} has nothing to show for {name} beyond the ground truth: {lacking}; "
                        f"run 'pcal train --round {index}' first")
    stages = ["reading the scene"] + ["predicting"] * has_model + ["mapping scores"] * has_scores
    stage = _stages(stages, on_stage)

    stage()
    scene = read_ply(path, name=name)
    labels = load_labels(project, index, name, len(scene)) if training else np.full(len(scene), UNKNOWN, np.int16)
    notes = []
    queried, units = None, 0
    if has_queries:
        queried, units = queried_mask(scene, labels, record, name)
    elif training:
        notes.append(f"round {index} has no {QUERIES_FILE}: no queries shown (run 'pcal select')")
    keep = queried if queried is not None else np.zeros(len(scene), dtype=bool)
    shown = subsample(len(scene), keep, max_points, seed)
    view = SceneView(scene=name, split=split, round=index, total_points=len(scene), index=shown,
                     xyz=scene.xyz[shown], truth=scene.label[shown], asked=(labels != UNKNOWN)[shown], notes=notes)
    if queried is not None:
        view.queried, view.query_unit, view.query_units = queried[shown], record.get("unit"), units
    if not training:
        notes.append(f"{name} is a {split} scene: no labels, scores or queries (only training scenes have them)")
    if has_model:
        stage()
        view.prediction = predict_points(project, index, scene, device)[shown]
    else:
        notes.append(f"round {index} has no {MODEL_FILE}: no prediction or error shown (run 'pcal train')")
    if has_scores:
        stage()
        scores, unit = point_scores(project, index, scene, name)
        view.scores, view.score_unit = scores[shown], unit
    elif training:
        notes.append(f"round {index} has no scores for {name}: no acquisition score shown (run 'pcal score')")
    stage()
    return view


def _stages(names: list[str], on_stage: StageCallback | None) -> Callable[[], None]:
    """A callable that reports the next stage each time it is called (the last call: all done)."""
    done = iter(range(len(names) + 1))

    def advance() -> None:
        step = next(done)
        if on_stage is not None:
            on_stage(step, len(names), names[step] if step < len(names) else "done")

    return advance
