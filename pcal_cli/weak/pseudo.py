"""WSegPC's region-point consistency targets: tag-masked, region-averaged pseudo-labels kept under a
class-adaptive confidence threshold. numpy or torch in, the same kind out (counts: numpy).

:func:`pseudo_labels`, per scene, from the EMA teacher's probabilities ``p [N, C]``:

1. tag masking: ``p_c <- p_c * tag_c / sum_k p_k * tag_k`` (absent classes get exactly 0; a row
   whose tagged mass is 0 becomes uniform over the tagged classes);
2. region voting (:func:`region_average`): every point takes the mean of step 1 over the points of
   its region; points without a region (id < 0) keep their own;
3. ``y = argmax``, ``c = max``; keep the point when ``c >= T[y]``, the class-adaptive threshold of
   :func:`class_adaptive_threshold` computed from the counts *before* this call;
4. ``new_counts = counts + bincount(accepted y)``.

Because absent classes hold exactly 0 and every row sums to 1 over the tagged classes, the
argmax is always a tagged class. A scene with no tag at all gets no pseudo-label (all ``-1``) and
leaves the counts unchanged. With ``base = 0`` every point is kept: that is WSegPC's final
pseudo-label generation for stage 3 (EMA + tags + region averaging, no threshold).

Calibration (stage 3's pseudo-labels only, pcal's departure; ``calibration="none"`` is the
release): the argmax of step 3 is taken over ``p_c / prior_c``, ``prior_c`` the mean tag-masked
probability of class ``c`` over the points of the scenes tagged with it (:class:`ClassPrior`,
summed over every tagged training scene first). The scene-averaged loss pushes up a class
tagged in most scenes everywhere; this is the usual prior correction of a classifier's scores,
so such a class no longer takes over the argmax (measured: docs/benchmarks.md, WSegPC).

The threshold, as the paper means it (a FlexMatch-style "class-wise learning status" with the
linear mapping): ``T_c = base * N_c / max_k N_k`` with ``base = 0.8`` and ``N_c`` the running
count of pseudo-labels of class ``c`` accepted so far in the stage. The class the teacher already
labels most often faces the full 0.8; classes it rarely labels get a proportionally LOWER bar, so
they receive pseudo-labels early (a class with ``N_c = 0`` while others have some is accepted at
any confidence until it has some). Region ids must be unique within the array given (offset them
when several scenes are stacked); the counts are global over scenes and steps.

Where pcal differs from the release: when every count is 0 (the first step of a stage), the
release's ratio leaves a threshold of 0 (every pseudo-label of the first step passes and seeds
the counts); pcal uses ``base`` for every class then, so the counts start from confident
predictions only (pass ``base=0`` for the first call to get the release's behaviour). The counts
are explicit state (an array the caller keeps and can save), not an attribute lost at restart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pcal_cli.errors import PcalError

#: Stage 3's pseudo-labels: 'prior' divides each class's scores by its prior before the argmax
#: (pcal), 'none' is the release's argmax.
PSEUDO_CALIBRATIONS = ("prior", "none")

#: WSegPC's ``p_cutoff``: the threshold of the class with the most accepted pseudo-labels.
BASE_THRESHOLD = 0.8


def _check_probs(probs: Any, what: str) -> Any:
    if isinstance(probs, torch.Tensor):
        if probs.ndim != 2 or probs.shape[1] < 1:
            raise PcalError(f"{what}: probabilities must be [N, C], got {tuple(probs.shape)}")
        return probs if probs.is_floating_point() else probs.float()
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] < 1:
        raise PcalError(f"{what}: probabilities must be [N, C], got {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        if not (np.issubdtype(probs.dtype, np.integer) or probs.dtype == bool):
            raise PcalError(f"{what}: probabilities must be numeric, got {probs.dtype}")
        probs = probs.astype(np.float32)
    return probs


def _check_region(region: Any, n: int, what: str) -> Any:
    is_torch = isinstance(region, torch.Tensor)
    arr = region if is_torch else np.asarray(region)
    if tuple(arr.shape) != (n,):
        raise PcalError(f"{what}: region must be [N] = [{n}] integers, got {tuple(arr.shape)}")
    if is_torch:
        not_int = arr.is_floating_point() or arr.is_complex() or arr.dtype == torch.bool
    else:
        not_int = not np.issubdtype(arr.dtype, np.integer)
    if n and not_int:
        raise PcalError(f"{what}: region ids must be integers, got {arr.dtype}")
    return arr


def region_average(probs: Any, region: Any) -> Any:
    """``[N, C]``: each point's row replaced by the mean row of its region (``region [N]``, id < 0 =
    none, such points keep their own). numpy in, numpy out (same float dtype); torch likewise."""
    probs = _check_probs(probs, "region average")
    n, c = probs.shape
    region = _check_region(region, n, "region average")
    if isinstance(probs, torch.Tensor):
        region = torch.as_tensor(region, device=probs.device).long()
        valid = region >= 0
        out = probs.clone()
        if not bool(valid.any()):
            return out
        _, inverse = torch.unique(region[valid], return_inverse=True)
        groups = int(inverse.max()) + 1
        sums = probs.new_zeros(groups, c).index_add_(0, inverse, probs[valid])
        counts = torch.bincount(inverse, minlength=groups).to(probs.dtype)
        out[valid] = (sums / counts[:, None])[inverse]
        return out
    region = np.asarray(region).astype(np.int64, copy=False)
    valid = region >= 0
    out = probs.copy()
    if not valid.any():
        return out
    _, inverse = np.unique(region[valid], return_inverse=True)
    inverse = inverse.reshape(-1)
    groups = int(inverse.max()) + 1
    counts = np.bincount(inverse, minlength=groups).astype(np.float64)
    rows = probs[valid]
    means = np.empty((groups, c), dtype=np.float64)
    for k in range(c):
        means[:, k] = np.bincount(inverse, weights=rows[:, k], minlength=groups) / counts
    out[valid] = means[inverse].astype(probs.dtype, copy=False)
    return out


def _check_base(base: float) -> float:
    base = float(base)
    if not 0.0 <= base <= 1.0:
        raise PcalError(f"the pseudo-label threshold must be in [0, 1], got {base}")
    return base


def _check_counts(counts: Any, classes: int | None, what: str) -> np.ndarray:
    if isinstance(counts, torch.Tensor):
        counts = counts.detach().cpu().numpy()
    arr = np.asarray(counts)
    if arr.ndim != 1 or (classes is not None and len(arr) != classes) or len(arr) < 1:
        want = f"[{classes}]" if classes is not None else "[C]"
        raise PcalError(f"{what}: counts must be {want}, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise PcalError(f"{what}: counts must be numbers, got {arr.dtype}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise PcalError(f"{what}: counts must be finite and >= 0")
    return arr


def class_adaptive_threshold(counts: Any, base: float = BASE_THRESHOLD) -> np.ndarray:
    """``[C]`` float64: ``base * N_c / max_k N_k`` (rarely accepted classes get a lower bar);
    ``base`` for every class when all counts are 0."""
    base = _check_base(base)
    arr = _check_counts(counts, None, "class-adaptive threshold").astype(np.float64)
    top = arr.max()
    if top <= 0:
        return np.full(len(arr), base, dtype=np.float64)
    return base * arr / top


class ClassPrior:
    """Running ``prior_c``: the mean tag-masked probability of class ``c`` over the points of the
    scenes tagged with ``c`` (numpy; add one scene at a time, then :meth:`divisors`)."""

    def __init__(self, classes: int) -> None:
        self.sums = np.zeros(classes, dtype=np.float64)
        self.points = np.zeros(classes, dtype=np.int64)

    def add(self, probs: np.ndarray, tags: Any) -> None:
        probs = _check_probs(probs, "class prior")
        tag_arr = _check_tags(tags, probs.shape[1], "class prior")
        if not tag_arr.any():
            return
        self.sums += tag_masked(probs, tag_arr).sum(axis=0, dtype=np.float64) * tag_arr
        self.points += len(probs) * tag_arr

    def divisors(self) -> np.ndarray:
        """``[C]`` float64: ``prior_c``, 1 for a class no scene is tagged with (or that gets no mass)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            prior = self.sums / self.points
        return np.where((self.points > 0) & (prior > 0), prior, 1.0)


def tag_masked(probs: np.ndarray, tag_arr: np.ndarray) -> np.ndarray:
    """Step 1 (numpy): probabilities renormalised over the tagged classes (absent classes 0; a row
    with no tagged mass uniform over the tagged classes)."""
    masked = probs * tag_arr.astype(probs.dtype)
    mass = masked.sum(axis=1, keepdims=True)
    uniform = np.broadcast_to(tag_arr.astype(probs.dtype) / tag_arr.sum(), masked.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass > 0, masked / np.where(mass > 0, mass, 1), uniform).astype(probs.dtype, copy=False)


def _check_tags(tags: Any, c: int, what: str) -> np.ndarray:
    tag_arr = tags.detach().cpu().numpy() if isinstance(tags, torch.Tensor) else np.asarray(tags)
    if tag_arr.shape != (c,):
        raise PcalError(f"{what}: tags must be [{c}], got {tag_arr.shape}")
    if tag_arr.dtype != bool:
        if not np.isin(tag_arr, (0, 1)).all():
            raise PcalError(f"{what}: tags must be bool or 0/1")
        tag_arr = tag_arr != 0
    return tag_arr


def pseudo_labels(probs: Any, tags: Any, region: Any, counts: Any,
                  base: float = BASE_THRESHOLD, prior: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
    """``(labels [N] int64, -1 where not kept; new_counts [C] int64)`` for one scene.

    ``probs [N, C]``: non-negative class scores (the teacher's softmax; need not be tag-masked).
    ``tags [C]``: the scene's tags (bool or 0/1). ``region [N]`` (id < 0 = none) or None for no
    region voting. ``counts [C]``: pseudo-labels accepted per class so far. ``prior [C]``
    (:meth:`ClassPrior.divisors`): the argmax is over the scores divided by it (the confidence
    stays the probability of the chosen class). Labels come back as the kind of ``probs`` (numpy,
    or torch on its device); the counts as numpy.
    """
    probs = _check_probs(probs, "pseudo-labels")
    n, c = probs.shape
    base = _check_base(base)
    counts = _check_counts(counts, c, "pseudo-labels").astype(np.int64)
    thresholds = class_adaptive_threshold(counts, base)
    if region is not None:
        region = _check_region(region, n, "pseudo-labels")
    is_torch = isinstance(probs, torch.Tensor)
    tag_arr = _check_tags(tags, c, "pseudo-labels")
    if prior is not None:
        prior = np.asarray(prior, dtype=np.float64)
        if prior.shape != (c,) or not np.isfinite(prior).all() or (prior <= 0).any():
            raise PcalError(f"pseudo-labels: prior must be [{c}] positive finite values")
    if not tag_arr.any():
        empty = torch.full((n,), -1, dtype=torch.long, device=probs.device) if is_torch \
            else np.full(n, -1, dtype=np.int64)
        return empty, counts.copy()

    if is_torch:
        if n and (not bool(torch.isfinite(probs).all()) or bool((probs < 0).any())):
            raise PcalError("pseudo-labels: probabilities must be finite and >= 0")
        tag_t = torch.as_tensor(tag_arr, device=probs.device)
        masked = probs * tag_t.to(probs.dtype)
        mass = masked.sum(dim=1, keepdim=True)
        uniform = (tag_t.to(probs.dtype) / float(tag_arr.sum())).expand_as(masked)
        masked = torch.where(mass > 0, masked / mass.clamp(min=torch.finfo(probs.dtype).tiny), uniform)
        if region is not None:
            masked = region_average(masked, region)
        if prior is None:
            confidence, label = masked.max(dim=1)
        else:
            label = (masked / torch.as_tensor(prior, device=probs.device, dtype=masked.dtype)).argmax(dim=1)
            confidence = masked.gather(1, label[:, None])[:, 0]
        thr = torch.as_tensor(thresholds, device=probs.device, dtype=torch.float64)[label]
        keep = confidence.double() >= thr
        labels = torch.where(keep, label, torch.full_like(label, -1))
        accepted = np.bincount(label[keep].cpu().numpy(), minlength=c)
        return labels, counts + accepted

    if n and (not np.isfinite(probs).all() or (probs < 0).any()):
        raise PcalError("pseudo-labels: probabilities must be finite and >= 0")
    masked = tag_masked(probs, tag_arr)
    if region is not None:
        masked = region_average(masked, region)
    label = (masked if prior is None else masked / prior).argmax(axis=1).astype(np.int64)
    confidence = masked[np.arange(n), label].astype(np.float64)
    keep = confidence >= thresholds[label]
    labels = np.where(keep, label, -1).astype(np.int64)
    return labels, counts + np.bincount(label[keep], minlength=c)
