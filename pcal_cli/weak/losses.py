"""WSegPC's losses on scene tags, in torch: the multiple-instance (scene-tag) loss, tag masking,
the region-point consistency cross-entropy and the linear warm-up of loss weights.

- :func:`scene_logits`: the mean of the point (or voxel) logits of each scene of a batch (global
  average pooling of the logits, ``z_b = mean_{p in b} z_p``); a scene with no row gets zeros.
- :func:`mil_loss`: the multi-label soft-margin loss between those scene logits and the tags,
  ``-(1/C) sum_c [y_c log sigmoid(z_c) + (1 - y_c) log sigmoid(-z_c)]``, averaged over scenes
  (exactly ``torch.nn.functional.multilabel_soft_margin_loss``).
- :func:`mask_absent`: absent classes' logits replaced by a large negative finite value
  (:func:`mask_value`: ``-1e9`` in float32/64, a quarter of the dtype's lowest value in half
  precision), so softmax/argmax/log-softmax only reach tagged classes and never produce NaN or
  infinities. A row with no tag at all is left unmasked (there is nothing to confine it to: a
  scene tagged with no class of the project).
- :func:`region_consistency_loss`: ``(1/P) sum_i m_i CE(student_i, y_i)`` for pseudo-labels
  ``y`` (``-1`` = rejected, ``m_i = 0``); the mean runs over all rows, rejected ones included,
  as in WSegPC. The student logits are not tag-masked (WSegPC does not mask them either).
- :func:`warmup_weight`: ``clip(step / warmup_steps, 0, 1)`` (WSegPC ramps its losses over 2400
  iterations; ``warmup_steps = 0`` means no ramp).

Differences from the release: it adds ``-1e6`` to absent logits (additive); pcal replaces them
with a dtype-safe constant (the same effect for float32, no overflow in half precision), and
leaves tag-less rows alone instead of masking every class.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pcal_cli.errors import PcalError

#: Value given to absent classes' logits in float32/float64.
MASK_VALUE = -1e9
#: WSegPC's warm-up length (iterations) for the scene-tag, cross-modal and consistency losses.
WARMUP_STEPS = 2400


def mask_value(dtype: torch.dtype) -> float:
    """The masking value for logits of ``dtype``: ``-1e9``, or ``finfo.min / 4`` when that is larger."""
    return max(MASK_VALUE, torch.finfo(dtype).min / 4)


def _check_logits(logits: torch.Tensor, what: str) -> tuple[int, int]:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or not logits.is_floating_point():
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise PcalError(f"{what}: logits must be a floating [P, C] tensor, got {shape}")
    if logits.shape[1] < 1:
        raise PcalError(f"{what}: logits need at least one class column")
    return int(logits.shape[0]), int(logits.shape[1])


def _as_bool(tags: torch.Tensor, what: str) -> torch.Tensor:
    tags = torch.as_tensor(tags)
    if tags.dtype == torch.bool:
        return tags
    if tags.is_complex() or (tags.numel() and not torch.all((tags == 0) | (tags == 1))):
        raise PcalError(f"{what}: tags must be bool or 0/1")
    return tags != 0


def scene_logits(logits: torch.Tensor, batch_index: torch.Tensor, num_scenes: int) -> torch.Tensor:
    """``[B, C]``: the mean of the rows of ``logits [P, C]`` per scene ``batch_index [P]`` (0..B-1).

    Differentiable (a scatter sum divided by the row count); a scene with no row gets a zero row.
    """
    rows, classes = _check_logits(logits, "scene logits")
    if isinstance(num_scenes, bool) or not isinstance(num_scenes, (int, np.integer)) or num_scenes < 1:
        raise PcalError(f"scene logits: num_scenes must be an integer >= 1, got {num_scenes!r}")
    batch_index = torch.as_tensor(batch_index, device=logits.device)
    if batch_index.shape != (rows,) or batch_index.is_floating_point() or batch_index.dtype == torch.bool:
        raise PcalError(f"scene logits: batch_index must be [P] = [{rows}] integers, got "
                        f"{batch_index.dtype} {tuple(batch_index.shape)}")
    batch_index = batch_index.long()
    if rows and (int(batch_index.min()) < 0 or int(batch_index.max()) >= num_scenes):
        raise PcalError(f"scene logits: batch_index must lie in [0, {num_scenes - 1}], got "
                        f"{int(batch_index.min())}..{int(batch_index.max())}")
    num_scenes = int(num_scenes)
    sums = logits.new_zeros(num_scenes, classes).index_add(0, batch_index, logits)
    counts = torch.bincount(batch_index, minlength=num_scenes).clamp(min=1).to(logits.dtype)
    return sums / counts[:, None]


def mil_loss(scene_logits: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    """Multi-label soft-margin loss of ``scene_logits [B, C]`` against ``tags [B, C]`` (bool or 0/1)."""
    scenes, classes = _check_logits(scene_logits, "scene-tag loss")
    if scenes < 1:
        raise PcalError("scene-tag loss: no scene in the batch")
    tags = _as_bool(torch.as_tensor(tags, device=scene_logits.device), "scene-tag loss")
    if tags.shape != (scenes, classes):
        raise PcalError(f"scene-tag loss: tags must be [{scenes}, {classes}], got {tuple(tags.shape)}")
    return F.multilabel_soft_margin_loss(scene_logits, tags.to(scene_logits.dtype))


def tags_per_point(tags: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
    """``[P, C]`` bool: each row's scene tags, ``tags [B, C]`` gathered by ``batch_index [P]``."""
    tags = _as_bool(torch.as_tensor(tags), "tags per point")
    if tags.ndim != 2:
        raise PcalError(f"tags per point: tags must be [B, C], got {tuple(tags.shape)}")
    batch_index = torch.as_tensor(batch_index, device=tags.device)
    if batch_index.ndim != 1 or batch_index.is_floating_point() or batch_index.dtype == torch.bool:
        raise PcalError(f"tags per point: batch_index must be [P] integers, got {tuple(batch_index.shape)}")
    if batch_index.numel() and (int(batch_index.min()) < 0 or int(batch_index.max()) >= len(tags)):
        raise PcalError(f"tags per point: batch_index out of range for {len(tags)} scenes")
    return tags[batch_index.long()]


def mask_absent(logits: torch.Tensor, tags_per_row: torch.Tensor) -> torch.Tensor:
    """``logits [P, C]`` with classes absent from each row's tags set to :func:`mask_value`.

    ``tags_per_row`` is ``[P, C]`` (or ``[C]``, one scene for every row), bool or 0/1. Rows whose
    tags are all False are returned unchanged. Gradients flow through the kept entries only.
    """
    rows, classes = _check_logits(logits, "tag masking")
    tags = _as_bool(torch.as_tensor(tags_per_row, device=logits.device), "tag masking")
    if tags.shape == (classes,):
        tags = tags.expand(rows, classes)
    if tags.shape != (rows, classes):
        raise PcalError(f"tag masking: tags must be [{rows}, {classes}] or [{classes}], got {tuple(tags.shape)}")
    keep = tags | ~tags.any(dim=1, keepdim=True)
    return logits.masked_fill(~keep, mask_value(logits.dtype))


def region_consistency_loss(student_logits: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
    """``(1/P) sum_{i accepted} CE(student_logits_i, pseudo_i)``; ``pseudo [P]`` int, ``-1`` = rejected.

    An exact 0 still attached to the student's graph when no row is accepted.
    """
    rows, classes = _check_logits(student_logits, "consistency loss")
    pseudo = torch.as_tensor(pseudo, device=student_logits.device)
    if pseudo.shape != (rows,) or pseudo.is_floating_point() or pseudo.dtype == torch.bool:
        raise PcalError(f"consistency loss: pseudo-labels must be [P] = [{rows}] integers, got "
                        f"{pseudo.dtype} {tuple(pseudo.shape)}")
    pseudo = pseudo.long()
    if rows and int(pseudo.max()) >= classes:
        raise PcalError(f"consistency loss: pseudo-label {int(pseudo.max())} for {classes} classes")
    accepted = pseudo >= 0
    nll = F.cross_entropy(student_logits, pseudo.clamp(min=0), reduction="none")
    return torch.where(accepted, nll, torch.zeros_like(nll)).sum() / max(rows, 1)


def warmup_weight(step: int, warmup_steps: int) -> float:
    """Linear ramp ``clip(step / warmup_steps, 0, 1)``: 0 at step 0, 1 from ``warmup_steps`` on.

    ``warmup_steps = 0`` gives 1 at every step (no warm-up, WSegPC's stage 2 for the tag losses).
    """
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, np.integer)) or warmup_steps < 0:
        raise PcalError(f"warm-up steps must be an integer >= 0, got {warmup_steps!r}")
    if warmup_steps == 0:
        return 1.0
    return float(min(1.0, max(0.0, step / warmup_steps)))
