"""JoPro's class prototypes: the anchors that feature mixing moves features towards.

``c_k = 1/2 mean(labelled features of class k) + 1/2 mean(uncertain pool features predicted k)``,
where the uncertain set is built per scene: in every scene, of the pool points predicted ``k``, the
``uncertain_fraction`` with the lowest margin (``ceil(fraction * n)`` of the ``n`` such points, at
least one; ties by row order), pooled over the scenes. When one side is empty the other is used
alone; when both are, the class is *absent* (``present[k] = False``, row left at zero and never to
be used). The release made such a prototype the zero vector and mixed towards it, which only
shrank the feature. Prototypes are means of (unit) features and are not re-normalised.
"""

from __future__ import annotations

import numpy as np

from pcal_cli.errors import PcalError


def _class_sums(features: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(sum of features per class [C, D] float64, count per class [C])``; one sort, no Python loop."""
    counts = np.bincount(labels, minlength=num_classes)
    sums = np.zeros((num_classes, features.shape[1]), dtype=np.float64)
    if len(labels):
        order = np.argsort(labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        nonempty = counts > 0
        sums[nonempty] = np.add.reduceat(features[order].astype(np.float64, copy=False), starts[nonempty], axis=0)
    return sums, counts


def uncertain_rows(pred: np.ndarray, margin: np.ndarray, scene_of: np.ndarray, fraction: float) -> np.ndarray:
    """Rows of the lowest-margin ``fraction`` (ceil, >= 1) of each (scene, predicted class) group."""
    n = len(pred)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.arange(n)
    order = np.lexsort((rows, margin, pred, scene_of))  # by scene, class, margin, then row
    s, p = scene_of[order], pred[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (s[1:] != s[:-1]) | (p[1:] != p[:-1])
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    sizes = np.diff(np.append(starts, n))
    take = np.maximum(1, np.ceil(np.round(fraction * sizes, 9))).astype(np.int64)
    rank = rows - starts[group]
    return np.sort(order[rank < take[group]])


def class_prototypes(labelled_feats: np.ndarray, labelled_y: np.ndarray, pool_feats: np.ndarray,
                     pool_pred: np.ndarray, pool_margin: np.ndarray, scene_of: np.ndarray, num_classes: int,
                     uncertain_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """``(protos [C, D] float32, present [C] bool)``: JoPro's class anchors (see the module docstring).

    ``labelled_feats`` ``[L, D]`` with labels ``labelled_y`` ``[L]`` (negative = ignore, e.g. the
    ignore value); ``pool_feats`` ``[U, D]`` with the network's predicted class ``pool_pred``, its
    margin ``pool_margin`` (top-1 minus top-2 probability, low = uncertain) and scene id
    ``scene_of`` per point. Absent classes' rows are zero: use ``present``.
    """
    num_classes = int(num_classes)
    if num_classes < 1:
        raise PcalError(f"class_prototypes: num_classes must be >= 1, got {num_classes}")
    if not 0 < uncertain_fraction <= 1:
        raise PcalError(f"uncertain_fraction must be in (0, 1], got {uncertain_fraction}")
    lab_f = np.asarray(labelled_feats)
    pool_f = np.asarray(pool_feats)
    if lab_f.ndim != 2 or pool_f.ndim != 2 or lab_f.shape[1] != pool_f.shape[1]:
        raise PcalError(f"class_prototypes: features must be [L, D] and [U, D], got {lab_f.shape} and {pool_f.shape}")
    lab_y = np.asarray(labelled_y)
    pred, margin, scene = np.asarray(pool_pred), np.asarray(pool_margin), np.asarray(scene_of)
    if lab_y.shape != (len(lab_f),):
        raise PcalError(f"class_prototypes: {len(lab_f)} labelled features but labels of shape {lab_y.shape}")
    for name, arr in (("predictions", pred), ("margins", margin), ("scene ids", scene)):
        if arr.shape != (len(pool_f),):
            raise PcalError(f"class_prototypes: {len(pool_f)} pool features but {name} of shape {arr.shape}")
    if not (np.issubdtype(lab_y.dtype, np.integer) and np.issubdtype(pred.dtype, np.integer)):
        raise PcalError("class_prototypes: labels and predictions must be integer class ids")
    if (len(lab_y) and lab_y.max() >= num_classes) or (len(pred) and (pred.min() < 0 or pred.max() >= num_classes)):
        raise PcalError(f"class_prototypes: a class id is outside 0..{num_classes - 1}")
    if np.isnan(margin).any():
        raise PcalError("class_prototypes: the margins hold NaN")
    known = lab_y >= 0
    lab_sum, lab_n = _class_sums(lab_f[known], lab_y[known].astype(np.int64), num_classes)
    rows = uncertain_rows(pred.astype(np.int64), margin, scene, uncertain_fraction)
    pool_sum, pool_n = _class_sums(pool_f[rows], pred[rows].astype(np.int64), num_classes)
    lab_mean = lab_sum / np.maximum(lab_n, 1)[:, None]
    pool_mean = pool_sum / np.maximum(pool_n, 1)[:, None]
    has_lab, has_pool = (lab_n > 0)[:, None], (pool_n > 0)[:, None]
    protos = np.where(has_lab & has_pool, 0.5 * (lab_mean + pool_mean), np.where(has_lab, lab_mean, pool_mean))
    present = (lab_n > 0) | (pool_n > 0)
    protos[~present] = 0
    return protos.astype(np.float32), present
