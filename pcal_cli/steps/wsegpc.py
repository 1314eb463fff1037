"""WSegPC as one pipeline on a round's scene tags (``pcal round --method wsegpc``).

Everything lives in ``PROJ/wsegpc/rNNN/`` (NNN: the round whose tags are used), apart from the
rounds, so pseudo-labels never mix with human labels and never count as budget:

    stage1/model.pt       scene-tag training (multiple-instance loss, tag drop, and cross-modal
                          guidance when the options name a folder of image features)
    stage2/model.pt       + region-point consistency, started from stage 1's weights
    pseudo/labels/*.npy   pseudo-labels of every tagged training scene: stage 2's EMA teacher,
                          tag-masked softmax averaged per region, argmax (every point labelled)
                          over the scores divided by each class's prior (``pseudo_calibration``
                          'prior'; 'none': the release's plain argmax)
    pseudo/labelling.json the pseudo-label record (source 'pseudo'; the ledger gets matching
                          'pseudo' entries, which budgets ignore)
    stage3/model.pt       a fresh network trained on the pseudo-labels; metrics.json

Each stage is skipped when its files exist, so the pipeline resumes like every pcal step.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcal_cli.atomic import TMP_SUFFIX, fsync_dir, write_json, write_npy, write_text
from pcal_cli.data.ply import read_ply
from pcal_cli.errors import PcalError
from pcal_cli.evaluation.metrics import confusion_matrix, summarize
from pcal_cli.layout import WSEGPC_DIR
from pcal_cli.project import Project
from pcal_cli.rounds import LABELLING_FILE, read_json, read_ledger
from pcal_cli.steps.pool import pool_scene
from pcal_cli.steps.tags import load_tags
from pcal_cli.training.checkpoint import load_model
from pcal_cli.training.inference import scene_inputs
from pcal_cli.training.supervised import MODEL_FILE, TrainOptions, resolve_device, train
from pcal_cli.weak.pseudo import PSEUDO_CALIBRATIONS

Say = Callable[[str], None]


def wsegpc_dir(project: Project, round_index: int) -> Path:
    return project.root / WSEGPC_DIR / f"r{round_index:03d}"


def run_wsegpc(project: Project, round_index: int, options: TrainOptions, *, say: Say = lambda text: None,
               on_step: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
    """Stages 1-3 on round ``round_index``'s tags; returns stage 3's metrics (if evaluated)."""
    from pcal_cli.evaluation.evaluate import METRICS_FILE, evaluate
    from pcal_cli.steps.engine import evaluation_split

    if not load_tags(project, round_index):
        raise PcalError(f"round {round_index} has no scene tags ('pcal label --oracle --unit tags' or "
                        "'pcal label import-tags FILE')")
    if options.image_features is not None:
        check_image_features(project, options.image_features, sorted(load_tags(project, round_index)))
    base = wsegpc_dir(project, round_index)
    plain = replace(options, semi=None, reg=None, warm_start=False, init=None)
    train(project, round_index, replace(plain, recipe="scene-tags"), folder=base / "stage1", resume=True,
          on_step=on_step)
    say("wsegpc: stage 1 (scene tags) trained")
    train(project, round_index, replace(plain, recipe="scene-tags-consistency",
                                        init=str(base / "stage1" / MODEL_FILE)),
          folder=base / "stage2", resume=True, on_step=on_step)
    say("wsegpc: stage 2 (+ region-point consistency) trained")
    record = write_pseudo_labels(project, round_index, base / "stage2" / MODEL_FILE, base / "pseudo",
                                 device=options.device, calibration=options.pseudo_calibration)
    say(f"wsegpc: {record['points_added']:,} pseudo-labels written")
    train(project, round_index, replace(plain, recipe=None, image_features=None), folder=base / "stage3",
          resume=True, on_step=on_step, labels_from=base / "pseudo" / "labels")
    say("wsegpc: stage 3 (fresh network on the pseudo-labels) trained")
    split = evaluation_split(project)
    if split is None:
        return {}
    metrics_path = base / "stage3" / METRICS_FILE
    if metrics_path.is_file() and split in read_json(metrics_path, "metrics"):
        return read_json(metrics_path, "metrics")[split]
    metrics = evaluate(project, round_index, split, device=options.device, folder=base / "stage3")
    say(f"wsegpc: stage 3 mIoU {100 * (metrics['miou'] or 0):.1f} on {split}")
    return metrics


def run_method(project: Project, options: TrainOptions, *, say: Say = lambda text: None,
               on_step: Callable[[int, int, float], None] | None = None) -> int:
    """The ``wsegpc`` method's loop (its ``runner``): the oracle tags the training scenes when the
    project has no round yet, then stages 1-3 run on the latest round; returns that round."""
    from pcal_cli.rounds import latest_round
    from pcal_cli.steps.tags import oracle_tags

    if options.image_features is not None:  # before the oracle's tags round is written
        check_image_features(project, options.image_features)
    if not project.rounds():
        commit = oracle_tags(project)
        say(f"round {commit.round}: the oracle tagged {len(project.scenes('train'))} scene(s)")
    run_wsegpc(project, latest_round(project), options, say=say, on_step=on_step)
    return latest_round(project)


def latest_model(project: Project) -> Path:
    """The network WSegPC trained last (stage 3, else stage 2), for ``--init wsegpc``."""
    for stage in ("stage3", "stage2"):
        found = sorted((project.root / WSEGPC_DIR).glob(f"r*/{stage}/{MODEL_FILE}"))
        if found:
            return found[-1]
    raise PcalError(f"{project.root}: --init wsegpc needs a WSegPC model: run 'pcal round --method wsegpc' first")


def check_image_features(project: Project, folder: str | Path, names: list[str] | None = None) -> None:
    """The image features folder has a file of the right shape for each training scene of
    ``names`` (default: all); only the files' headers are read (training reads the values)."""
    from pcal_cli.data.ply import ply_vertex_count
    from pcal_cli.weak.crossmodal import ImageFeatures

    names = project.scenes("train") if names is None else names
    ImageFeatures(folder).check([(name, ply_vertex_count(project.scene_path("train", name))) for name in names],
                                values=False)


def point_probabilities(model: torch.nn.Module, ckpt: dict[str, Any], scene, device) -> np.ndarray:
    """Softmax probabilities per point ``[N, C]`` of one scene."""
    inputs, inverse = scene_inputs(scene, ckpt["channels"], ckpt["voxel_size"], ckpt["num_classes"], device)
    model.eval()
    with torch.no_grad():
        logits, _ = model(inputs)
    return torch.softmax(logits.float(), dim=1).cpu().numpy()[inverse]


def write_pseudo_labels(project: Project, round_index: int, checkpoint: Path, folder: Path,
                        device: str = "auto", calibration: str = "prior") -> dict[str, Any]:
    """Pseudo-labels of every tagged training scene into ``folder`` (atomically, once).

    ``calibration`` 'prior': a first pass over the scenes measures each class's prior
    (:class:`~pcal_cli.weak.pseudo.ClassPrior`), the second takes the argmax over the scores
    divided by it; 'none': the release's argmax (one pass)."""
    from pcal_cli.weak import ClassPrior, pseudo_labels

    if calibration not in PSEUDO_CALIBRATIONS:
        raise PcalError(f"pseudo-label calibration '{calibration}': choose one of {', '.join(PSEUDO_CALIBRATIONS)}")

    if (folder / LABELLING_FILE).is_file():
        return read_json(folder / LABELLING_FILE, "pseudo-labels")
    torch_device = resolve_device(device)
    model, state = load_model(checkpoint, torch_device, weights="teacher")
    ckpt = state["config"]
    tags = load_tags(project, round_index)
    staging = folder.with_name(f".{folder.name}.{os.getpid()}{TMP_SUFFIX}")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "labels").mkdir(parents=True)
    counts = np.zeros(ckpt["num_classes"], dtype=np.int64)
    prior = None
    if calibration == "prior":
        measured = ClassPrior(ckpt["num_classes"])
        for name in sorted(tags):
            measured.add(point_probabilities(model, ckpt, pool_scene(project, name), torch_device), tags[name])
        prior = measured.divisors()
    added = {}
    for name in sorted(tags):
        scene = pool_scene(project, name)
        probs = point_probabilities(model, ckpt, scene, torch_device)
        region = scene.region if (scene.region >= 0).any() else None
        labels, counts = pseudo_labels(probs, tags[name], region, counts, base=0.0, prior=prior)
        write_npy(staging / "labels" / f"{name}.npy", labels.astype(np.int16))
        added[name] = int((labels >= 0).sum())
    record = {"round": round_index, "source": "pseudo", "unit": "point", "points_added": sum(added.values()),
              "scenes": {n: {"points": p, "units": p} for n, p in added.items()},
              "checkpoint": str(checkpoint.relative_to(project.root)), "calibration": calibration,
              "prior": None if prior is None else [round(float(p), 6) for p in prior]}
    write_json(staging / LABELLING_FILE, record)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    fsync_dir(folder.parent)
    where = str(folder.relative_to(project.root))
    entries = [e for e in read_ledger(project) if e.get("where") != where]
    entries += [{"round": round_index, "scene": n, "unit": "point", "units": p, "points": p, "source": "pseudo",
                 "where": where} for n, p in added.items()]
    write_text(project.ledger_path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))
    return record


def pseudo_label_quality(project: Project, round_index: int, pseudo: Path | None = None) -> dict[str, Any]:
    """mIoU of a round's WSegPC pseudo-labels (or those in the folder ``pseudo``) against the
    training split's ground truth."""
    folder = (pseudo or wsegpc_dir(project, round_index) / "pseudo") / "labels"
    if not folder.is_dir():
        raise PcalError(f"{folder}: no pseudo-labels (run 'pcal round --method wsegpc' first)")
    config = project.config
    confusion = np.zeros((config.num_classes, config.num_classes), dtype=np.int64)
    for path in sorted(folder.glob("*.npy")):
        truth = read_ply(project.scene_path("train", path.stem)).label
        labels = np.load(path, allow_pickle=False)
        known = labels >= 0
        confusion += confusion_matrix(truth[known], labels[known], config.num_classes)
    metrics = summarize(confusion, config.classes)
    metrics.update(split="train", round=round_index, pseudo=True, points=int(confusion.sum()))
    return metrics
