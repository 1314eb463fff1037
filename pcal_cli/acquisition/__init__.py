"""Acquisition scorers, by name: ``get_scorer("entropy").point_score(probs)``.

Higher score = more informative = selected first. A :class:`ScorerSpec` says what a scorer
needs, so the round engine knows what to compute before scoring:

- ``point_score(x)``: per-point scores ``[N]`` from ``x`` = softmax probabilities ``[N, C]``,
  or the stack of ``needs_passes`` MC-dropout passes ``[T, N, C]`` when ``needs_passes > 0``;
  called as ``point_score(x, rng)`` when ``needs_rng``. Unit scores are then the mean (or max)
  over a unit's unlabelled points (:func:`unit_scores`).
- ``unit_level``: scores whole units directly (``segment_entropy``); ``point_score`` is None.
- ``unit_score(units, costs, rng)``: one score per unit without any model output (``random``:
  every unit is equally likely to rank first, whatever its size; averaging uniform point scores
  per unit would rank small units first). Such a scorer needs no trained model
  (``needs_model`` is False) unless the selector asks for pooled features.
- ``needs_features``: the selector needs pooled features per unit (:func:`pool_features`).
- ``selector``: the selector the scorer is meant for (``coreset`` -> ``kcenter``).
- ``scene_score(inputs, options)``: per-point scores from a whole :class:`SceneInputs` (points,
  probabilities, features, cached geometry) for scorers that need more than probabilities
  (``redal``); ``options`` are the resolved ``options`` (``outdoor_options`` override them on
  outdoor projects).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pcal_cli.acquisition.aggregate import pool_features, unit_scores
from pcal_cli.acquisition.hmmu import HMMU_LEVELS, HMMU_WEIGHTS, hmmu_scores
from pcal_cli.acquisition.inputs import SceneInputs
from pcal_cli.acquisition.mc_dropout import (
    enable_dropout,
    mc_dropout_entropy,
    mc_dropout_mode,
    mc_dropout_probs,
    with_classifier_dropout,
)
from pcal_cli.acquisition.redal import INDOOR_WEIGHTS, OUTDOOR_WEIGHTS, information_scores
from pcal_cli.acquisition.segment_entropy import segment_entropy
from pcal_cli.acquisition.uncertainty import confidence, entropy, margin, random_scores


@dataclass(frozen=True)
class ScorerSpec:
    """What a scorer computes and what it needs (see the module docstring)."""

    name: str
    point_score: Callable[..., np.ndarray] | None
    needs_passes: int = 0
    needs_features: bool = False
    unit_level: bool = False
    description: str = ""
    needs_rng: bool = False
    selector: str = "topk"
    scene_score: Callable[[SceneInputs, dict[str, Any]], np.ndarray] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    outdoor_options: dict[str, Any] = field(default_factory=dict)
    prepare: str | None = None  # "module:function" the engine calls once per round before scoring (fms: the flow)
    unit_score: Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray] | None = None

    @property
    def round_state(self) -> bool:
        """Whether the engine prepares per-round state (``prepare``) before scoring."""
        return self.prepare is not None

    @property
    def needs_model(self) -> bool:
        """Whether scoring runs the round's network (every scorer but ``random``)."""
        return self.unit_score is None

    def default_options(self, indoor: bool = True) -> dict[str, Any]:
        """The option defaults for an indoor or outdoor project."""
        return {**self.options, **({} if indoor else self.outdoor_options)}


def random_point_scores(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniform random score per row of ``probs`` (points as units)."""
    return random_scores(len(probs), rng)


def random_unit_scores(units: np.ndarray, costs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniform random score per unit, whatever its size: the random baseline ranks units
    uniformly, as ``pcal seed --method random`` does."""
    return random_scores(len(units), rng)


def zero_scores(probs: np.ndarray) -> np.ndarray:
    """All-zero scores (core-set ranks nothing: k-center greedy selects on features)."""
    return np.zeros(len(probs), dtype=np.float32)


def redal_point_scores(inputs: SceneInputs, options: dict[str, Any]) -> np.ndarray:
    """ReDAL's point information (normalised entropy + colour discontinuity + surface variation)."""
    colour, variation = inputs.properties(int(options["k"]))
    return information_scores(inputs.point_probs(), colour, variation, options["weights"])


def hmmu_point_scores(inputs: SceneInputs, options: dict[str, Any]) -> np.ndarray:
    """HPAL's hierarchical minimum margin, negated so that higher = ask first."""
    return -hmmu_scores(inputs.xyz, inputs.point_probs(), options["levels"], options["weights"])


def fms_point_scores(inputs: SceneInputs, options: dict[str, Any]) -> np.ndarray:
    """JoPro's feature-mixing stability per voxel, negated (higher = ask first), mapped to points."""
    from pcal_cli.jopro import fms_scores, l2_normalise

    state = inputs.state
    seed = int(inputs.rng.integers(2**31))
    voxel = fms_scores(state["flow"], l2_normalise(inputs.features), state["protos"], state["present"],
                       draws=int(options["draws"]), seed=seed)
    return -voxel[inputs.inverse]


FMS_OPTIONS = {"draws": 5, "candidates": 0.02, "flow_steps": 200, "flow_samples": 200_000, "flow_blocks": 8,
               "flow_hidden": 128}

SCORERS: dict[str, ScorerSpec] = {
    spec.name: spec
    for spec in (
        ScorerSpec("random", random_point_scores, needs_rng=True, unit_score=random_unit_scores,
                   description="one uniform random score per unit (seeded; needs no model)"),
        ScorerSpec("confidence", confidence, description="1 - max softmax probability"),
        ScorerSpec("margin", margin, description="1 - (best - second best probability)"),
        ScorerSpec("entropy", entropy, description="entropy of the softmax probabilities"),
        ScorerSpec("mc_dropout", mc_dropout_entropy, needs_passes=10,
                   description="entropy of the mean softmax of 10 MC-dropout passes"),
        ScorerSpec("segment_entropy", None, unit_level=True, options={"segments": "supervoxel"},
                   description="mean over a unit's supervoxel pieces of the entropy of their predicted-class "
                               "histograms (segments=unit: the unit's own histogram, Annotator's VCD)"),
        ScorerSpec("redal", None, scene_score=redal_point_scores,
                   options={"weights": INDOOR_WEIGHTS, "k": 50}, outdoor_options={"weights": OUTDOOR_WEIGHTS},
                   description="ReDAL: a*H/ln C + b*colour discontinuity + c*surface variation (k=50)"),
        ScorerSpec("hmmu", None, scene_score=hmmu_point_scores,
                   options={"levels": HMMU_LEVELS, "weights": HMMU_WEIGHTS},
                   description="HPAL: -(m + 0.1 m1 + 0.01 m2 + 0.001 m3), margins of nested 0.1/0.5/1.0 m voxels"),
        ScorerSpec("fms", None, scene_score=fms_point_scores, options=FMS_OPTIONS,
                   prepare="pcal_cli.steps.jopro_round:prepare_fms",
                   needs_features=True,
                   description="JoPro: -(P (Q1 - Q2) - V) over mixtures with class prototypes (a flow per round)"),
        ScorerSpec("coreset", zero_scores, needs_features=True, selector="kcenter",
                   description="k-center greedy on pooled features (scores are all 0)"),
    )
}


def _check_scorer(name: str, entry: object) -> ScorerSpec:
    from pcal_cli.plugins import named_spec

    return named_spec(name, entry, ScorerSpec)


def all_scorers() -> dict[str, ScorerSpec]:
    """The built-in scorers and those of installed plugins (entry point group ``pcal.scorers``)."""
    from pcal_cli.plugins import load_plugins

    load_plugins("scorers", SCORERS, _check_scorer)
    return SCORERS


def get_scorer(name: str) -> ScorerSpec:
    """The scorer registered as ``name`` (case-insensitive); :class:`PcalError` if unknown."""
    from pcal_cli.plugins import lookup

    return lookup("scorers", SCORERS, _check_scorer, name)


__all__ = [
    "SCORERS",
    "SceneInputs",
    "ScorerSpec",
    "confidence",
    "enable_dropout",
    "entropy",
    "get_scorer",
    "margin",
    "mc_dropout_entropy",
    "mc_dropout_mode",
    "mc_dropout_probs",
    "pool_features",
    "random_scores",
    "segment_entropy",
    "unit_scores",
    "with_classifier_dropout",
]
