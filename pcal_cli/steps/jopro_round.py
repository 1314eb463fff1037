"""JoPro's per-round state for ``pcal score --scorer fms``: the feature flow and the prototypes.

Before the scenes are scored, one pass over the training scenes (the round's model, no ground
truth) collects, per scene:

- the L2-normalised decoder features of its labelled voxels, summed per known class;
- the most uncertain 20 % (by margin) of its unlabelled voxels predicted as each class, summed
  per predicted class;
- a seeded sample of voxel features with confident pseudo-labels (max p > 0.8, else -1).

Prototypes are ``c_k = 1/2 mean(labelled k) + 1/2 mean(uncertain predicted k)``, one side alone
when the other is empty, absent when both are (the release used a zero vector). The flow is
refitted on the sample each round, starting from the previous round's flow when it exists (the
flow is kept across rounds). Both are written to ``rounds/rNNN/scores/`` (``flow.pt``, loaded with
``weights_only=True``, and ``prototypes.npz``) before any scene is scored, so an interrupted
``pcal score`` reuses them and ``pcal select --selector jopro`` reads the prototypes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.sparse import csr_matrix

from pcal_cli.atomic import atomic_open
from pcal_cli.errors import PcalError
from pcal_cli.jopro.flow import FeatureFlow, fit_flow, l2_normalise
from pcal_cli.jopro.prototypes import uncertain_rows
from pcal_cli.project import Project
from pcal_cli.rounds import load_labels
from pcal_cli.steps.pool import pool_scene
from pcal_cli.training.inference import scene_inputs
from pcal_cli.layout import FLOW_FILE, PROTOTYPES_FILE

CONFIDENT = 0.8
UNCERTAIN_FRACTION = 0.2


def class_sums(features: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of ``features`` per class ``[C, D]`` (float64) and the count per class ``[C]``."""
    rows = np.arange(len(labels))
    onehot = csr_matrix((np.ones(len(labels)), (labels.astype(np.int64), rows)), shape=(num_classes, len(labels)))
    return np.asarray(onehot @ features.astype(np.float64)), np.bincount(labels, minlength=num_classes)


def combine_prototypes(labelled: tuple[np.ndarray, np.ndarray],
                       uncertain: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(protos [C, D] float32, present [C] bool)`` from per-class (sums, counts) of both sides."""
    (lab_sum, lab_n), (unc_sum, unc_n) = labelled, uncertain
    lab_mean = lab_sum / np.maximum(lab_n, 1)[:, None]
    unc_mean = unc_sum / np.maximum(unc_n, 1)[:, None]
    both = (lab_n > 0) & (unc_n > 0)
    protos = np.where((lab_n > 0)[:, None], lab_mean, unc_mean)
    protos[both] = 0.5 * (lab_mean[both] + unc_mean[both])
    return protos.astype(np.float32), (lab_n > 0) | (unc_n > 0)


def prepare_fms(project: Project, round_index: int, folder: Path, model: torch.nn.Module, ckpt: dict[str, Any],
                options: dict[str, Any], seed: int, device: torch.device) -> dict[str, Any]:
    """The flow and prototypes of round ``round_index`` (read back when ``folder`` has them)."""
    flow_path, proto_path = folder / FLOW_FILE, folder / PROTOTYPES_FILE
    num_classes = ckpt["num_classes"]
    if flow_path.is_file() and proto_path.is_file():
        return {"flow": load_flow(flow_path), **_load_prototypes(proto_path)}
    names = project.scenes("train")
    per_scene = max(1, int(options["flow_samples"]) // max(len(names), 1))
    rng = np.random.default_rng([seed, round_index, 7])
    lab = unc = None
    samples, pseudo = [], []
    model.eval()
    for name in names:
        scene = pool_scene(project, name)
        labels = load_labels(project, round_index, name, len(scene))
        inputs, inverse = scene_inputs(scene, ckpt["channels"], ckpt["voxel_size"], num_classes, device)
        with torch.no_grad():
            logits, feats = model(inputs)
        probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
        feats = l2_normalise(feats.float().cpu().numpy())
        known = labels >= 0
        sums = class_sums(feats[inverse[known]], labels[known].astype(np.int64), num_classes)
        lab = sums if lab is None else (lab[0] + sums[0], lab[1] + sums[1])
        unlabelled = np.ones(len(feats), dtype=bool)
        unlabelled[inverse[known]] = False
        rows = np.flatnonzero(unlabelled)
        top2 = np.sort(probs[rows], axis=1)[:, -2:] if num_classes > 1 else np.ones((len(rows), 2))
        pred = probs[rows].argmax(axis=1)
        chosen = rows[uncertain_rows(pred, top2[:, 1] - top2[:, 0], np.zeros(len(rows), dtype=np.int64),
                                     UNCERTAIN_FRACTION)]
        sums = class_sums(feats[chosen], probs[chosen].argmax(axis=1), num_classes)
        unc = sums if unc is None else (unc[0] + sums[0], unc[1] + sums[1])
        pick = np.sort(rng.choice(len(feats), size=min(per_scene, len(feats)), replace=False))
        samples.append(feats[pick])
        pseudo.append(np.where(probs[pick].max(axis=1) > CONFIDENT, probs[pick].argmax(axis=1), -1))
    protos, present = combine_prototypes(lab, unc)
    if not present.any():
        raise PcalError("fms: no class has labelled or predicted points; nothing to anchor the mixing to")
    flow = FeatureFlow(samples[0].shape[1], num_classes, blocks=int(options["flow_blocks"]),
                       hidden=int(options["flow_hidden"]), seed=seed)
    previous = project.round_dir(round_index - 1) / "scores" / FLOW_FILE if round_index > 0 else None
    if previous is not None and previous.is_file():
        kept = load_flow(previous)
        if (kept.dim, kept.num_classes) == (flow.dim, flow.num_classes) and \
                len(kept.couplings) == len(flow.couplings):
            flow.load_state_dict(kept.state_dict())
    summary = fit_flow(flow, np.concatenate(samples), np.concatenate(pseudo).astype(np.int64),
                       steps=int(options["flow_steps"]), seed=seed)
    save_flow(flow_path, flow, {"blocks": int(options["flow_blocks"]), "hidden": int(options["flow_hidden"]),
                                "summary": {k: v for k, v in summary.items() if isinstance(v, (int, float))}})
    with atomic_open(proto_path, "wb") as handle:
        np.savez(handle, protos=protos, present=present)
    return {"flow": flow, "protos": protos, "present": present}


def save_flow(path: Path, flow: FeatureFlow, config: dict[str, Any]) -> None:
    state = {"dim": flow.dim, "num_classes": flow.num_classes, **config,
             "state": {k: v.detach().cpu() for k, v in flow.state_dict().items()}}
    with atomic_open(path, "wb") as handle:
        torch.save(state, handle)


def load_flow(path: Path) -> FeatureFlow:
    """A flow saved by :func:`save_flow` (``weights_only=True``; anything else is a clear error)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        flow = FeatureFlow(state["dim"], state["num_classes"], blocks=state["blocks"], hidden=state["hidden"])
        flow.load_state_dict(state["state"])
    except Exception as exc:  # corrupt, truncated, or not a flow
        raise PcalError(f"{path}: not a loadable pcal feature flow ({str(exc).splitlines()[0][:120]})") from None
    return flow


def _load_prototypes(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {"protos": data["protos"], "present": data["present"].astype(bool)}
    except Exception as exc:
        raise PcalError(f"{path}: unreadable prototypes ({str(exc).splitlines()[0][:120]})") from None


def load_prototypes(project: Project, round_index: int) -> dict[str, np.ndarray]:
    path = project.round_dir(round_index) / "scores" / PROTOTYPES_FILE
    if not path.is_file():
        raise PcalError(f"{path}: no prototypes; score the round with --scorer fms first")
    return _load_prototypes(path)
