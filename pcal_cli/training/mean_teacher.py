"""One step of HPAL's teacher-student training (``--semi teacher-student``).

The same cropped points are voxelised twice: a strong view for the student
(:func:`pcal_cli.training.views.strong_view`) and the clean points for the teacher. Both
networks' voxel logits are mapped back to the points through their voxelisation maps, so the
loss (:func:`pcal_cli.training.teacher_student.teacher_student_loss`) compares the two views
point by point: every labelled point supervises the student (not only its voxel's
representative), the teacher's distribution guides the student everywhere (KL), and confident
teacher predictions are pseudo-labels. After the optimiser step the teacher follows the student
by EMA (parameters and batch-norm statistics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from pcal_cli.training.data import Voxelized, collate, crop, point_features, voxelize
from pcal_cli.training.ema import ema_update
from pcal_cli.training.teacher_student import ramp_weights, teacher_student_loss
from pcal_cli.training.views import strong_view

SEMI_RECIPES = ("none", "teacher-student")


def point_outputs(model: torch.nn.Module, items: list[Voxelized],
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[sum N_b, C]`` and decoder features per point of a batch of voxelised scenes."""
    inputs, _ = collate(items, device)
    logits, features = model(inputs)
    offsets = np.cumsum([0] + [len(v.coords) for v in items[:-1]])
    rows = torch.from_numpy(np.concatenate([v.inverse + o for v, o in zip(items, offsets)])).to(logits.device)
    return logits[rows], features[rows]


@dataclass
class TwoViews:
    """One step's batch seen twice: ``student`` (augmented) and ``teacher`` (clean) voxelisations of
    the same cropped points, their known ``labels`` per point, the cropped ``parts`` and the
    ``picked`` scene indices."""

    student: list[Voxelized] = field(default_factory=list)
    teacher: list[Voxelized] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    parts: list = field(default_factory=list)
    picked: list[int] = field(default_factory=list)


def two_views(scenes: list, options, config, step: int, view: Callable) -> TwoViews:
    """Draw step ``step``'s scenes (seeded by ``(seed, step)``) and voxelise each crop twice:
    ``view(xyz, rgb, rng)`` for the student, the clean points for the teacher."""
    rng = np.random.default_rng([options.seed, step])
    torch.manual_seed(options.seed * 1_000_003 + step)
    count = min(options.batch_size, len(scenes))
    batch = TwoViews()
    for index in rng.choice(len(scenes), size=count, replace=False):
        scene, known = scenes[index][0], scenes[index][1]
        keep = crop(scene.xyz, options.max_points, known, rng)
        part = scene.subset(keep)
        xyz, rgb = view(part.xyz, part.rgb, rng)
        batch.student.append(voxelize(xyz, point_features(xyz, part, config.channels, rgb=rgb), known[keep],
                                      config.voxel_size, config.num_classes))
        batch.teacher.append(voxelize(part.xyz, point_features(part.xyz, part, config.channels), known[keep],
                                      config.voxel_size, config.num_classes))
        batch.labels.append(known[keep].astype(np.int64))
        batch.parts.append(part)
        batch.picked.append(int(index))
    return batch


def ramp_steps(ramp: float, total_steps: int) -> int:
    """A ramp given as a fraction of the run (``< 1``) or as steps (``>= 1``), in steps."""
    return int(round(ramp * total_steps)) if ramp < 1 else int(ramp)


def teacher_student_step(model: torch.nn.Module, teacher: torch.nn.Module, optimizer: torch.optim.Optimizer,
                         scenes: list, options, config, step: int, device: torch.device,
                         total_steps: int | None = None) -> float:
    """One optimiser step of the student and one EMA update of the teacher; returns the loss.
    The consistency and pseudo-label weights follow :func:`ramp_weights` over ``ts_ramp`` of the
    run's ``total_steps`` (a fraction) or steps (an integer)."""
    elastic = getattr(options, "ts_elastic", True)
    batch = two_views(scenes, options, config, step,
                      lambda xyz, rgb, rng: strong_view(xyz, rgb, rng, elastic=elastic))
    student_items, teacher_items, labels = batch.student, batch.teacher, batch.labels
    target = torch.from_numpy(np.concatenate(labels)).to(device)
    with torch.no_grad():
        teacher.eval()
        teacher_logits, _ = point_outputs(teacher, teacher_items, device)
    student_logits, _ = point_outputs(model, student_items, device)
    ramp = ramp_steps(getattr(options, "ts_ramp", 0.0), total_steps or options.steps)
    loss, _ = teacher_student_loss(student_logits, teacher_logits, target, threshold=options.pseudo_threshold,
                                   weights=ramp_weights(step, ramp), kl=getattr(options, "ts_kl", "row-mean"))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    ema_update(teacher, model, options.ema_keep)
    return float(loss.detach())
