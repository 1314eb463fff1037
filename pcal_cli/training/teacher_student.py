"""The loss of HPAL's teacher-student training, on per-point logits of two views of the same points.

``loss = w_sup * CE(student, labels | labelled rows)
       + w_cons * KL(p_teacher || p_student)
       + w_pseudo * CE(student, argmax p_teacher | unlabelled rows with max p_teacher >= threshold)``

The KL term is normalised as in HPAL's release by default (``kl="class-mean"``: the mean over rows
*and classes* of the element-wise terms, i.e. the mean per-row KL divided by C); ``kl="row-mean"``
is the mean per-row KL (C times larger; pcal's rule before 0.2).

Each cross-entropy is a mean over its own rows, and is 0 (still attached to the student's graph)
when it has no row. The teacher's logits are detached: gradients reach only the student. The
logits are per point: the caller maps both views' voxel logits to the points through their
voxelisation inverse maps, so row ``i`` is the same point in both.

Differences from HPAL's released code: its supervised CE was on voxel logits against the label of
each voxel's first point (labelled points that are not first were lost); its teacher logits were
not detached (harmless, the teacher has no optimiser).

:func:`ramp_weights` gives the weights of a step: the consistency weight rises smoothly from
exactly 0, ``(1 - cos(pi t)) / 2`` with ``t = step / ramp`` (the S-shape of Mean Teacher's
ramp-up), and pseudo-labels are off until the ramp has ended (the teacher's warm-up), so a teacher
that has not learnt yet neither pulls the student towards its noise nor hands out pseudo-labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from pcal_cli.errors import PcalError

#: HPAL's pseudo-label confidence threshold on the teacher's max probability.
PSEUDO_THRESHOLD = 0.75
KL_RULES = ("class-mean", "row-mean")


def ramp_weights(step: int, ramp: int) -> tuple[float, float, float]:
    """``(supervised, consistency, pseudo)`` weights of step ``step`` (0-based) with a ramp of
    ``ramp`` steps: 1; the S-shaped ramp from 0 at step 0 to 1 at step ``ramp``; 0 before step
    ``ramp``, then 1. ``ramp = 0`` gives constant weights ``(1, 1, 1)`` (HPAL's release)."""
    if ramp <= 0:
        return 1.0, 1.0, 1.0
    t = min(1.0, step / ramp)
    return 1.0, 0.5 * (1.0 - math.cos(math.pi * t)), 0.0 if step < ramp else 1.0


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` (0 with a valid graph when the mask is empty)."""
    return torch.where(mask, values, torch.zeros_like(values)).sum() / mask.sum().clamp(min=1)


def teacher_student_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                         threshold: float = PSEUDO_THRESHOLD, weights: Sequence[float] = (1.0, 1.0, 1.0),
                         kl: str = "row-mean") -> tuple[torch.Tensor, dict[str, float]]:
    """``(loss, parts)`` for ``[P, C]`` student and teacher logits and labels ``[P]`` (negative = unknown).

    ``parts`` holds floats: ``supervised``, ``consistency``, ``pseudo`` (unweighted), ``total``,
    ``labelled`` and ``confident`` (row counts of the two CE terms).
    """
    if student_logits.ndim != 2 or student_logits.shape != teacher_logits.shape:
        raise PcalError(f"teacher-student loss: logits must be two [P, C] tensors of one shape, got "
                        f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    rows, classes = student_logits.shape
    if labels.shape != (rows,) or labels.is_floating_point():
        raise PcalError(f"teacher-student loss: labels must be [P] = [{rows}] integers, got "
                        f"{labels.dtype} {tuple(labels.shape)}")
    if rows and int(labels.max()) >= classes:
        raise PcalError(f"teacher-student loss: label {int(labels.max())} for {classes} classes")
    if not 0.0 <= float(threshold) <= 1.0:
        raise PcalError(f"teacher-student loss: threshold must be in [0, 1], got {threshold}")
    w = [float(v) for v in weights]
    if len(w) != 3:
        raise PcalError(f"teacher-student loss: 3 weights (supervised, consistency, pseudo), got {len(w)}")

    log_student = F.log_softmax(student_logits, dim=1)
    log_teacher = F.log_softmax(teacher_logits.detach().to(log_student.dtype), dim=1)
    labels = labels.to(device=student_logits.device, dtype=torch.long)

    labelled = labels >= 0
    nll_labelled = -log_student.gather(1, labels.clamp(min=0)[:, None])[:, 0]
    supervised = _masked_mean(nll_labelled, labelled)

    if kl not in KL_RULES:
        raise PcalError(f"teacher-student loss: kl must be one of {', '.join(KL_RULES)}, got {kl!r}")
    kl_rows = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=1)
    consistency = kl_rows.sum() / max(rows, 1) / (classes if kl == "class-mean" else 1)

    confidence, pseudo_labels = log_teacher.exp().max(dim=1)
    confident = (~labelled) & (confidence >= threshold)
    nll_pseudo = -log_student.gather(1, pseudo_labels[:, None])[:, 0]
    pseudo = _masked_mean(nll_pseudo, confident)

    loss = w[0] * supervised + w[1] * consistency + w[2] * pseudo
    parts = {
        "supervised": float(supervised.detach()),
        "consistency": float(consistency.detach()),
        "pseudo": float(pseudo.detach()),
        "total": float(loss.detach()),
        "labelled": float(labelled.sum()),
        "confident": float(confident.sum()),
    }
    return loss, parts
