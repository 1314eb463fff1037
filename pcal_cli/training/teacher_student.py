"""The loss of HPAL's teacher-student training, on per-point logits of two views of the same points.

``loss = w_sup * CE(student, labels | labelled rows)
       + w_cons * mean_rows KL(p_teacher || p_student)
       + w_pseudo * CE(student, argmax p_teacher | unlabelled rows with max p_teacher >= threshold)``

Each cross-entropy is a mean over its own rows, and is 0 (still attached to the student's graph)
when it has no row. The teacher's logits are detached: gradients reach only the student. The
logits are per point: the caller maps both views' voxel logits to the points through their
voxelisation inverse maps, so row ``i`` is the same point in both.

Differences from HPAL's released code: its supervised CE was on voxel logits against the label of
each voxel's first point (labelled points that are not first were lost); its KL used PyTorch's
element-wise mean, i.e. 1/C of the per-row KL used here; its teacher logits were not detached
(harmless, the teacher has no optimiser).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from pcal_cli.errors import PcalError

#: HPAL's pseudo-label confidence threshold on the teacher's max probability.
PSEUDO_THRESHOLD = 0.75


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` (0 with a valid graph when the mask is empty)."""
    return torch.where(mask, values, torch.zeros_like(values)).sum() / mask.sum().clamp(min=1)


def teacher_student_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                         threshold: float = PSEUDO_THRESHOLD,
                         weights: Sequence[float] = (1.0, 1.0, 1.0)) -> tuple[torch.Tensor, dict[str, float]]:
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

    kl_rows = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=1)
    consistency = kl_rows.sum() / max(rows, 1)

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
