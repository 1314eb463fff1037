"""Segment entropy: how mixed the predicted classes are inside a unit.

For each segment, the entropy (nats) of the histogram of the predicted classes of its points:
0 when the model predicts one class everywhere in it, ``ln k`` when it splits it evenly among
``k`` classes. With ``segments`` (the supervoxels), a unit's score is the mean of the entropies of
the supervoxel pieces it holds, as the method's paper defines it; without, the unit is its own
segment (the same when the unit is the supervoxel). On 0.25 m grid cells, one segment per cell,
this is Annotator's voxel confusion degree (VCD).
"""

from __future__ import annotations

import numpy as np
from scipy.special import entr

from pcal_cli.acquisition.aggregate import check_points, selectable_points
from pcal_cli.errors import PcalError


def segment_entropy(
    pred: np.ndarray,
    unit_ids: np.ndarray,
    num_classes: int,
    available: np.ndarray | None = None,
    segments: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(units int64 [U] sorted, scores float64 [U])``: entropy of each unit's class histogram,
    or with ``segments`` (per-point segment ids, -1 none) the mean entropy of its segment pieces.

    ``pred`` holds one predicted class per point (``0..num_classes-1``). Points with unit id
    ``-1``, or ``available == False`` when ``available`` is given, are left out, so the rows
    match :func:`~pcal_cli.acquisition.aggregate.unit_scores` for the same arguments.
    """
    pred = np.asarray(pred)
    if pred.ndim != 1 or not np.issubdtype(pred.dtype, np.integer):
        raise PcalError(f"predictions must be a 1-D integer array, got {pred.dtype} {pred.shape}")
    if num_classes < 1:
        raise PcalError(f"num_classes must be positive, got {num_classes}")
    unit_ids, available = check_points(unit_ids, available, len(pred))
    points, units, inverse = selectable_points(unit_ids, available)
    classes = pred[points].astype(np.int64)
    if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
        raise PcalError(
            f"predicted class ids must lie in 0..{num_classes - 1}, "
            f"got {classes.min()}..{classes.max()}"
        )
    if segments is None:
        return units, _entropy_of_groups(inverse, classes, len(units), num_classes)
    segments = np.asarray(segments, dtype=np.int64)
    if segments.shape != pred.shape:
        raise PcalError(f"{len(segments)} segment ids for {len(pred)} points")
    seg = segments[points]
    seg = np.where(seg >= 0, seg, -1 - np.arange(len(seg)))  # a point without a segment is its own piece
    pieces, piece = np.unique(np.stack([inverse, seg], axis=1), axis=0, return_inverse=True)
    piece = piece.reshape(-1)
    entropies = _entropy_of_groups(piece, classes, len(pieces), num_classes)
    counts = np.bincount(pieces[:, 0], minlength=len(units))
    return units, np.bincount(pieces[:, 0], weights=entropies, minlength=len(units)) / np.maximum(counts, 1)


def _entropy_of_groups(group: np.ndarray, classes: np.ndarray, groups: int, num_classes: int) -> np.ndarray:
    hist = np.bincount(group * num_classes + classes, minlength=groups * num_classes)
    hist = hist.reshape(groups, num_classes).astype(np.float64)
    share = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1)
    return entr(share).sum(axis=1)
