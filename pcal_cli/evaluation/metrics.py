"""Segmentation metrics from one confusion matrix accumulated over a whole split.

IoU_c = TP / (TP + FP + FN). ``miou`` averages the classes present in the ground truth of the
split, so a model that predicts a stray class (absent from the truth) scores that class 0 IoU in
the table but does not change which classes are averaged: two models on one split are always
averaged over the same classes. ``miou_union`` is the older rule, the classes present in the truth
*or* the predictions. A class absent from both is reported as ``None``.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``C x C`` int64 counts, rows = ground truth, columns = prediction; truth < 0 is ignored."""
    truth = np.asarray(truth).astype(np.int64)
    pred = np.asarray(pred).astype(np.int64)
    keep = (truth >= 0) & (truth < num_classes)
    return np.bincount(truth[keep] * num_classes + pred[keep], minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU of each class, NaN where the class is absent from both truth and prediction."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def summarize(confusion: np.ndarray, classes: list[str]) -> dict:
    """mIoU, per-class IoU, overall and mean class accuracy from a confusion matrix."""
    iou = iou_per_class(confusion)
    total = confusion.sum()
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        class_acc = np.where(support > 0, np.diag(confusion) / support, np.nan)
    present = support > 0  # classes of the ground truth
    union = ~np.isnan(iou)
    return {
        "miou": float(iou[present].mean()) if present.any() else None,
        "miou_union": float(np.nanmean(iou)) if union.any() else None,
        "miou_rule": "classes present in the ground truth",
        "oa": float(np.trace(confusion) / total) if total else None,
        "macc": float(np.nanmean(class_acc)) if (support > 0).any() else None,
        "iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(classes, iou)},
        "points": int(total),
        "classes_in_mean": int(present.sum()),
    }
