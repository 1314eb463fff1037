"""Segment entropy: how mixed the predicted classes are inside a unit.

For each unit, the entropy (nats) of the histogram of the predicted classes of its points:
0 when the model predicts one class everywhere in it, ``ln k`` when it splits it evenly among
``k`` classes. On 0.25 m grid cells this is Annotator's voxel confusion degree (VCD).
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
) -> tuple[np.ndarray, np.ndarray]:
    """``(units int64 [U] sorted, scores float64 [U])``: entropy of each unit's class histogram.

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
    hist = np.bincount(inverse * num_classes + classes, minlength=len(units) * num_classes)
    hist = hist.reshape(len(units), num_classes).astype(np.float64)
    share = hist / hist.sum(axis=1, keepdims=True)
    return units, entr(share).sum(axis=1)
