"""Segmentation metrics from one confusion matrix accumulated over a whole split.

IoU_c = TP / (TP + FP + FN). mIoU averages the classes present in the ground truth or the
predictions of the split (union > 0); a class absent from both is reported as ``None`` and left
out of the mean, rather than counted as 0 or 1.
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
    present = ~np.isnan(iou)
    return {
        "miou": float(np.nanmean(iou)) if present.any() else None,
        "oa": float(np.trace(confusion) / total) if total else None,
        "macc": float(np.nanmean(class_acc)) if (support > 0).any() else None,
        "iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(classes, iou)},
        "points": int(total),
        "classes_in_mean": int(present.sum()),
    }
