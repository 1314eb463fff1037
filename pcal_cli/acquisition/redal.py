"""ReDAL's point information score (Wu et al., ICCV 2021, Eq. 4).

``s = alpha * H / ln C + beta * colour_discontinuity + gamma * surface_variation``; a region's
score is the mean over its points (:func:`pcal_cli.acquisition.aggregate.unit_scores`).

The entropy is normalised by ``ln C`` (so it lies in 0..1 whatever the number of classes); the
release divided the entropy in bits by ``C``, which shrinks it as classes are added and changes
the balance with the geometric terms from dataset to dataset.
"""

from __future__ import annotations

import numpy as np

from pcal_cli.acquisition.uncertainty import entropy
from pcal_cli.errors import PcalError

INDOOR_WEIGHTS = (1.0, 0.1, 0.05)
OUTDOOR_WEIGHTS = (1.0, 0.0, 0.05)


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """``H(p) / ln C`` per row of ``probs`` ``[N, C]``, in 0..1 (0 for a single class)."""
    num_classes = probs.shape[1]
    if num_classes < 2:
        return np.zeros(len(probs), dtype=np.float64)
    return entropy(probs).astype(np.float64) / np.log(num_classes)


def information_scores(probs: np.ndarray, colour: np.ndarray, variation: np.ndarray,
                       weights: tuple[float, float, float] = INDOOR_WEIGHTS) -> np.ndarray:
    """ReDAL point information ``[N]`` (float64; higher = ask first) from per-point
    probabilities ``[N, C]``, colour discontinuity ``[N]`` and surface variation ``[N]``."""
    alpha, beta, gamma = (float(w) for w in weights)
    if len(colour) != len(probs) or len(variation) != len(probs):
        raise PcalError(f"{len(probs)} probability rows, {len(colour)} colour and {len(variation)} "
                        "variation values: one of each per point is needed")
    score = alpha * normalised_entropy(probs)
    if beta:
        score += beta * colour.astype(np.float64)
    if gamma:
        score += gamma * variation.astype(np.float64)
    return score
