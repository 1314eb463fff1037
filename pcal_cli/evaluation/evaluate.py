"""Evaluate a round's model (or the full-supervision reference) on a split of the project."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pcal_cli.atomic import write_json
from pcal_cli.data.ply import read_ply, write_ply
from pcal_cli.errors import PcalError
from pcal_cli.evaluation.metrics import confusion_matrix, summarize
from pcal_cli.project import Project
from pcal_cli.rounds import labelled_counts, run_dir
from pcal_cli.training.checkpoint import load_model
from pcal_cli.training.inference import Tiling, predict_scene
from pcal_cli.training.supervised import MODEL_FILE, resolve_device
from pcal_cli.layout import METRICS_FILE, SHARDS_DIR



def labelled_share(project: Project, round_index: int | None) -> tuple[int, int]:
    """(asked points, total points) of the training split in a round (the reference: all known)."""
    total = project.point_count("train")
    if round_index is not None:
        return sum(labelled_counts(project, round_index).values()), total
    known = sum(int((read_ply(project.scene_path("train", n)).label >= 0).sum()) for n in project.scenes("train"))
    return known, total


def evaluate(project: Project, round_index: int | None, split: str = "test", *, device: str = "auto",
             save_predictions: bool = False, folder: Path | None = None, shard: str | None = None,
             on_scene: Callable[[int, int, str], None] | None = None,
             tiling: Tiling | None = None) -> dict[str, Any]:
    """One confusion matrix over every point of ``split``; writes ``metrics.json`` in the round
    (or in ``folder``, whose ``model.pt`` is evaluated: a WSegPC stage). A scene of more than
    ``tiling.max_voxels`` voxels is run through the model tile by tile.

    With ``shard="i/N"`` only the i-th of N interleaved slices of the scenes is evaluated and its
    confusion matrix written to ``metrics.shards/<split>.<i>of<N>.json``; :func:`merge_shards`
    then sums the N parts into ``metrics.json`` (the same numbers as one unsharded run).
    """
    from pcal_cli.shards import parse_shard, shard_scenes

    if split == "train":
        raise PcalError("evaluate on val or test; the training split is what the model learnt from")
    names = shard_scenes(project.scenes(split), parse_shard(shard))
    if not names:
        raise PcalError(f"{project.root}: the project has no '{split}' scenes")
    folder = folder or run_dir(project, round_index)
    torch_device = resolve_device(device)
    config = project.config
    model, state = load_model(folder / MODEL_FILE, torch_device, classes=config.classes, channels=config.channels)
    ckpt = state["config"]
    confusion = np.zeros((config.num_classes, config.num_classes), dtype=np.int64)
    for done, name in enumerate(names, start=1):
        scene = read_ply(project.scene_path(split, name))
        prediction = predict_scene(model, scene, config.channels, ckpt["voxel_size"], config.num_classes, torch_device,
                                   tiling)
        labels = prediction.point_labels
        del prediction
        confusion += confusion_matrix(scene.label, labels, config.num_classes)
        if save_predictions:
            _write_prediction(folder / "predictions" / f"{name}.ply", scene, labels, config.colors)
        if on_scene is not None:
            on_scene(done, len(names), name)
    if shard is not None:
        i, n = parse_shard(shard)
        part = {"split": split, "shard": [i, n], "scenes": names, "confusion": confusion.tolist(),
                "checkpoint_step": state["step"]}
        write_json(folder / SHARDS_DIR / f"{split}.{i}of{n}.json", part)
        return part
    if not confusion.sum():
        raise PcalError(f"{project.root}: the '{split}' split has no labelled points to evaluate on")
    return _write_metrics(project, round_index, folder, split, confusion, len(names), state["step"])


def merge_shards(project: Project, round_index: int | None, split: str = "test", *,
                 folder: Path | None = None) -> dict[str, Any]:
    """Sum the N shard confusion matrices of ``evaluate --shard i/N`` into ``metrics.json``."""
    folder = folder or run_dir(project, round_index)
    parts = sorted((folder / SHARDS_DIR).glob(f"{split}.*of*.json"))
    if not parts:
        raise PcalError(f"{folder / SHARDS_DIR}: no shards of '{split}' to merge (run 'pcal evaluate --shard i/N')")
    loaded = [json.loads(p.read_text()) for p in parts]
    counts = {tuple(p["shard"])[1] for p in loaded}
    steps = {p["checkpoint_step"] for p in loaded}
    if len(counts) != 1 or len(steps) != 1:
        raise PcalError(f"{folder / SHARDS_DIR}: shards of different runs (N or model differ); delete the old ones")
    n = counts.pop()
    found = sorted(p["shard"][0] for p in loaded)
    if found != list(range(1, n + 1)):
        missing = sorted(set(range(1, n + 1)) - set(found))
        raise PcalError(f"{folder / SHARDS_DIR}: shard(s) {missing} of {n} missing")
    confusion = np.sum([np.asarray(p["confusion"], dtype=np.int64) for p in loaded], axis=0)
    if not confusion.sum():
        raise PcalError(f"{project.root}: the '{split}' split has no labelled points to evaluate on")
    scenes = sum(len(p["scenes"]) for p in loaded)
    return _write_metrics(project, round_index, folder, split, confusion, scenes, steps.pop())


def _write_metrics(project: Project, round_index: int | None, folder: Path, split: str, confusion: np.ndarray,
                   scenes: int, step: int) -> dict[str, Any]:
    config = project.config
    labelled, total = labelled_share(project, round_index)
    metrics = summarize(confusion, config.classes)
    metrics.update(
        split=split,
        round=round_index,
        scenes=scenes,
        labelled_points=labelled,
        labelled_percent=100.0 * labelled / total if total else 0.0,
        confusion=confusion.tolist(),
        checkpoint_step=step,
    )
    path = folder / METRICS_FILE
    existing = _read_metrics(path)
    existing[split] = metrics
    write_json(path, existing)
    return metrics


def _read_metrics(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _write_prediction(path: Path, scene, labels: np.ndarray, colors: list[list[int]]) -> None:
    """A PLY for viewing: ``label`` = prediction, colours = the predicted class's colour."""
    palette = np.asarray(colors, dtype=np.uint8)
    view = scene.subset(np.arange(len(scene)))
    view.label = labels
    view.rgb = palette[labels]
    write_ply(path, view)
