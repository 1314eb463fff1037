"""What a scene-level scorer sees: the model's outputs on one training scene, never its labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SceneInputs:
    """One training scene as a scorer sees it.

    ``probs`` ``[V, C]`` and ``features`` ``[V, D]`` are per voxel; ``inverse`` ``[N]`` maps each
    point to its voxel; ``xyz`` ``[N, 3]`` and ``rgb`` ``[N, 3]`` (or None) are the points;
    ``properties(k)`` returns the cached ``(colour_discontinuity, surface_variation)`` per point;
    ``state`` is what the scorer's round preparation computed (the ``fms`` flow and prototypes).
    """

    xyz: np.ndarray
    rgb: np.ndarray | None
    probs: np.ndarray
    features: np.ndarray
    inverse: np.ndarray
    rng: np.random.Generator
    properties: Callable[[int], tuple[np.ndarray, np.ndarray]]
    state: dict[str, Any] = field(default_factory=dict)  # per-round state (fms: flow and prototypes)

    def point_probs(self) -> np.ndarray:
        """Probabilities per point ``[N, C]``."""
        return self.probs[self.inverse]
