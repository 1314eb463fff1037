"""``pcal score``: run round N's model over the unlabelled pool and score every labelling unit.

Writes ``rounds/rNNN/scores/config.json`` (the settings, first) and one ``<scene>.npz`` per
training scene with ``units`` (int64), ``scores`` (float64, higher = ask first), ``costs``
(unlabelled points per unit), ``pool`` (the scene's unlabelled points) and, for feature-based
selectors, ``features`` and ``xyz`` (mean decoder feature and centroid per unit) and
``labelled_features``. With ``keep`` only the best ``keep`` units of each scene are stored (the
candidates; for point units this keeps files small). Scenes already scored are skipped, so an
interrupted run continues; ``--shard i/N`` scores the i-th of N slices of the scene list.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcal_cli import __version__
from pcal_cli.acquisition import SceneInputs, ScorerSpec, get_scorer
from pcal_cli.acquisition.aggregate import pool_features, unit_scores
from pcal_cli.acquisition.mc_dropout import mc_dropout_entropy, mc_dropout_mode
from pcal_cli.acquisition.segment_entropy import segment_entropy
from pcal_cli.atomic import atomic_open, write_json
from pcal_cli.errors import PcalError
from pcal_cli.geometry.grid import check_size
from pcal_cli.options import resolve_options
from pcal_cli.project import Project
from pcal_cli.shards import parse_shard, shard_scenes  # noqa: F401 - also pcal score's
from pcal_cli.rounds import UNKNOWN, load_labels, read_json, run_dir
from pcal_cli.selection.topk import rank_descending
from pcal_cli.plugins import resolve
from pcal_cli.steps.pool import pool_scene
from pcal_cli.steps.properties import scene_properties
from pcal_cli.training.checkpoint import load_model
from pcal_cli.training.inference import Tiling, run_tiled, scene_voxels
from pcal_cli.training.supervised import MODEL_FILE, resolve_device
from pcal_cli.units import DEFAULT_CELL, check_unit, unit_ids
from pcal_cli.layout import SCORES_DIR

AGGREGATES = ("mean", "max")


@dataclass(frozen=True)
class ScoreSettings:
    scorer: str
    unit: str = "region"
    cell: float = DEFAULT_CELL
    aggregate: str = "mean"
    seed: int = 0
    passes: int = 10  # MC-dropout forward passes
    features: bool = False  # store pooled unit features and centroids (for feature-based selectors)
    options: dict[str, Any] = field(default_factory=dict)  # scorer options given by the user
    keep: int | None = None  # keep only the best `keep` units of each scene (candidates)

    def to_dict(self) -> dict:
        return {"scorer": self.scorer, "unit": self.unit, "cell": self.cell, "aggregate": self.aggregate,
                "seed": self.seed, "passes": self.passes, "features": self.features, "keep": self.keep}


def resolved_options(project: Project, spec: ScorerSpec, given: dict[str, Any]) -> dict[str, Any]:
    """The scorer's options for this project (indoor/outdoor defaults, then ``given``), JSON-ready."""
    options = resolve_options(spec.default_options(project.config.indoor), given, f"scorer '{spec.name}'")
    return json.loads(json.dumps(options))


def scores_dir(project: Project, round_index: int) -> Path:
    return project.round_dir(round_index) / SCORES_DIR


def score_round(project: Project, round_index: int, settings: ScoreSettings, *, device: str = "auto",
                shard: str | None = None, force: bool = False,
                on_scene: Callable[[int, int, str], None] | None = None, tiling: Tiling | None = None) -> int:
    """Score the pool of round ``round_index``; return how many scenes were scored now. A scene
    of more than ``tiling.max_voxels`` voxels is run through the model tile by tile."""
    spec = get_scorer(settings.scorer)
    check_unit(settings.unit)
    if settings.keep is not None and settings.keep < 1:
        raise PcalError(f"--keep must be at least 1, got {settings.keep}")
    if settings.aggregate not in AGGREGATES:
        raise PcalError(f"unknown aggregate '{settings.aggregate}' (choose from {', '.join(AGGREGATES)})")
    if settings.unit == "cell":
        check_size(settings.cell, "--cell")
    todo = shard_scenes(project.scenes("train"), parse_shard(shard))  # bad shards fail before any write
    torch_device = resolve_device(device)
    folder = scores_dir(project, round_index)
    config_path = folder / "config.json"
    uses_model = spec.needs_model or settings.features
    model, state = (load_model(run_dir(project, round_index) / MODEL_FILE, torch_device, classes=project.config.classes,
                               channels=project.config.channels) if uses_model else (None, None))
    options = resolved_options(project, spec, settings.options)
    wanted = {**settings.to_dict(), "options": options, "model_step": None if state is None else state["step"],
              "pcal_version": __version__}
    if config_path.is_file():
        existing = read_json(config_path, "score settings")
        if existing != wanted and not force:
            raise PcalError(f"{folder}: scored with other settings ({existing.get('scorer')}, unit "
                            f"{existing.get('unit')}); pass --force to score again")
        if existing != wanted:
            for old in folder.glob("*.npz"):
                old.unlink()
    write_json(config_path, wanted)

    ckpt = None
    round_state: dict[str, Any] = {}
    if state is not None:
        ckpt = state["config"]
        if spec.prepare is not None:  # per-round state the scorer needs (fms: the flow and the prototypes)
            round_state = resolve(spec.prepare)(project, round_index, folder, model, ckpt, options, settings.seed,
                                                torch_device)
    names = project.scenes("train")
    done_now = 0
    for done, name in enumerate(todo, start=1):
        path = folder / f"{name}.npz"
        if path.exists() and not force:
            if on_scene is not None:
                on_scene(done, len(todo), name)
            continue
        arrays = score_scene(project, round_index, name, names.index(name), model, ckpt, spec, settings,
                             options, torch_device, round_state, tiling)
        with atomic_open(path, "wb") as handle:
            np.savez(handle, **arrays)
        done_now += 1
        if on_scene is not None:
            on_scene(done, len(todo), name)
    return done_now


def score_scene(project: Project, round_index: int, name: str, scene_index: int, model: torch.nn.Module | None,
                ckpt: dict | None, spec: ScorerSpec, settings: ScoreSettings, options: dict[str, Any],
                device: torch.device, round_state: dict[str, Any] | None = None,
                tiling: Tiling | None = None) -> dict[str, np.ndarray]:
    """Unit scores of one training scene (pure of file writes, except the geometry cache).
    ``model`` is None for a scorer that needs no network (``random``) when no features are asked."""
    scene = pool_scene(project, name)
    labels = load_labels(project, round_index, name, len(scene))
    ids = unit_ids(scene, settings.unit, settings.cell)
    available = (labels == UNKNOWN) & (ids >= 0)
    rng = np.random.default_rng([settings.seed, round_index, scene_index])
    arrays: dict[str, np.ndarray] = {}
    voxel_features = inverse = None
    point_scores = None
    if not spec.needs_model:  # one score per unit, whatever its size (random)
        units, _, costs = unit_scores(np.zeros(len(scene)), ids, available)
        arrays.update(units=units, scores=np.asarray(spec.unit_score(units, costs, rng), np.float64), costs=costs)
    if model is not None and (spec.needs_model or settings.features):
        num_classes = ckpt["num_classes"]
        voxels = scene_voxels(scene, ckpt["channels"], ckpt["voxel_size"])
        inverse = voxels.inverse
        probs, voxel_features = _forward(model, voxels, device, spec, settings, rng, tiling)  # per voxel
        del voxels
        if not spec.needs_model:
            pass  # the forward pass only pools features for the selector
        elif spec.unit_level:
            pred = (probs.mean(axis=0) if probs.ndim == 3 else probs).argmax(axis=1)[inverse]
            segments = scene.region if options.get("segments", "supervoxel") == "supervoxel" else None
            units, scores = segment_entropy(pred, np.where(available, ids, -1), num_classes, segments=segments)
            arrays.update(units=units, scores=scores.astype(np.float64),
                          costs=np.bincount(ids[available], minlength=int(ids.max()) + 1)[units].astype(np.int64))
        elif spec.scene_score is not None:
            context = SceneInputs(xyz=scene.xyz, rgb=scene.rgb, probs=probs, features=voxel_features,
                                  inverse=inverse, rng=rng,
                                  properties=lambda k: scene_properties(project, scene, k),
                                  state=round_state or {})
            point_scores = spec.scene_score(context, options)
        elif spec.needs_passes:
            point_scores = mc_dropout_entropy(probs)[inverse]
        elif spec.point_score is not None:
            point_scores = (spec.point_score(probs, rng) if spec.needs_rng else spec.point_score(probs))[inverse]
        else:
            point_scores = np.zeros(len(scene))
    if "units" not in arrays:
        if point_scores is None:
            raise PcalError(f"scorer '{spec.name}' produced no scores for {name}")
        units, scores, costs = unit_scores(point_scores, ids, available, how=settings.aggregate)
        arrays.update(units=units, scores=scores, costs=costs)
    arrays["pool"] = np.int64(arrays["costs"].sum())
    selectable = available
    keep = settings.keep
    if "candidates" in options:  # a fraction of the scene's units (fms: JoPro's lowest 2 % per scene)
        candidates = max(1, int(np.ceil(float(options["candidates"]) * len(arrays["units"]))))
        arrays["candidates"] = np.int64(min(candidates, len(arrays["units"])))
        keep = max(candidates, keep or 0)  # more rows stored: the points that fill the budget after them
    if keep is not None and len(arrays["units"]) > keep:
        best = np.sort(rank_descending(arrays["scores"])[:keep])  # rows stay sorted by unit
        arrays.update(units=arrays["units"][best], scores=arrays["scores"][best], costs=arrays["costs"][best])
        selectable = available & np.isin(ids, arrays["units"])
    if voxel_features is not None and (spec.needs_features or settings.features):
        arrays["features"] = pool_features(voxel_features, ids, selectable, rows=inverse).astype(np.float32)
        arrays["xyz"] = pool_features(scene.xyz, ids, selectable).astype(np.float32)
        known = (labels >= 0) & (ids >= 0)
        arrays["labelled_features"] = pool_features(voxel_features, ids, known, rows=inverse).astype(np.float32)
    return arrays


@torch.no_grad()
def _forward(model, voxels, device: torch.device, spec: ScorerSpec, settings: ScoreSettings,
             rng: np.random.Generator, tiling: Tiling | None = None):
    """Softmax probabilities per voxel ([V, C], or [T, V, C] for MC dropout) and features [V, D],
    tile by tile on a large scene (MC dropout: all passes of a tile, then the next tile)."""
    model.eval()
    if not spec.needs_passes:
        def once(inputs):
            logits, features = model(inputs)
            return torch.softmax(logits.float(), dim=1).cpu().numpy(), features.float().cpu().numpy()

        return run_tiled(voxels, device, once, tiling)

    def passes(inputs):
        probs = []
        for _ in range(settings.passes):
            logits, features = model(inputs)
            probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        return np.stack(probs, axis=1), features.float().cpu().numpy()  # [V, T, C]: voxels first

    with torch.random.fork_rng(devices=[]), mc_dropout_mode(model):
        torch.manual_seed(int(rng.integers(2**31)))
        probs, features = run_tiled(voxels, device, passes, tiling)
    return np.ascontiguousarray(probs.transpose(1, 0, 2)), features


def load_scores(project: Project, round_index: int) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """The score settings and every training scene's arrays; missing scenes are a clear error."""
    folder = scores_dir(project, round_index)
    config = read_json(folder / "config.json", "score settings (run 'pcal score' first)")
    names = project.scenes("train")
    missing = [n for n in names if not (folder / f"{n}.npz").is_file()]
    if missing:
        raise PcalError(f"{folder}: scores missing for {len(missing)} of {len(names)} scenes "
                        f"(first: {missing[0]}); run 'pcal score' (every shard) first")
    arrays = {}
    for name in names:
        try:
            with np.load(folder / f"{name}.npz", allow_pickle=False) as data:
                arrays[name] = {k: data[k] for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile):
            raise PcalError(f"{folder / (name + '.npz')}: damaged score file; delete it and run 'pcal score' "
                            "again") from None
        if not {"units", "scores", "costs"} <= set(arrays[name]):
            raise PcalError(f"{folder / (name + '.npz')}: not a pcal score file; delete it and score again")
    return config, arrays

