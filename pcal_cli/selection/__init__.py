"""Budgeted selectors, by name: ``get_selector("topk")``.

- ``topk`` (:func:`select_topk`): highest scores first, skip-and-continue within the budget.
- ``kcenter`` (:func:`kcenter_greedy`): core-set farthest-first on pooled unit features.
- ``diversity`` (:func:`diversity_select`): ReDAL's per-cluster score decay on pooled features.
- ``fds`` (:func:`fds_select`): HPAL's feature-distance suppression of near, similar points.
- ``jopro``: JoPro's spatial and prototype suppression of the ``fms`` candidates.

All return row indices in selection order, never spend more than the budget, never take a unit
of cost 0, and are deterministic (ties by row order; randomness only from the given seed). A
:class:`SelectorSpec` also says whether the selector needs pooled unit features and which
options (``-o KEY=VALUE``) it takes, and holds ``choose``: one signature for every selector,
``choose(inputs: SelectionInputs, budget_points, options) -> rows``, which the round engine calls
(a selector from a plugin provides its own ``choose``). ``needs`` names what ``choose`` needs
beyond scores and costs (``features``, ``xyz``, ``labelled_features``, ``prototypes``, ``point``
units), so the engine loads it and refuses a wrong combination with one clear line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pcal_cli.selection.budget import Budget, parse_budget, split_budget
from pcal_cli.selection.diversity import DEFAULT_DECAY, diversity_select
from pcal_cli.jopro.select import jopro_select
from pcal_cli.selection.fds import fds_select
from pcal_cli.selection.kcenter import kcenter_greedy
from pcal_cli.selection.topk import rank_descending, select_topk


@dataclass
class SelectionInputs:
    """Every candidate unit of a round's pool, all scenes together, rows sorted by (scene, unit):
    ``scores`` (higher = ask first), ``costs`` (points), ``scene_of`` (scene index), ``pools`` (the
    unlabelled points of each scene), the round and the seed; and what a selector ``needs``:
    pooled ``features`` and centroids ``xyz`` per unit, ``labelled_features`` of the labelled
    units, ``prototypes`` (JoPro's, a dict), ``unit``/``scorer`` of the scores."""

    scores: np.ndarray
    costs: np.ndarray
    scene_of: np.ndarray
    pools: list[int]
    seed: int = 0
    round_index: int = 0
    unit: str = "region"
    scorer: str = ""
    features: np.ndarray | None = None
    xyz: np.ndarray | None = None
    labelled_features: np.ndarray | None = None
    prototypes: dict[str, np.ndarray] | None = None
    candidates: list[int] | None = None  # per scene: its candidates, the best-scored rows (None: every row)


def _topk(inputs: SelectionInputs, budget: int, options: dict[str, Any]) -> np.ndarray:
    return select_topk(inputs.scores, inputs.costs, budget)


def _kcenter(inputs: SelectionInputs, budget: int, options: dict[str, Any]) -> np.ndarray:
    labelled = inputs.labelled_features
    return kcenter_greedy(inputs.features, inputs.costs, budget,
                          labelled if labelled is not None and len(labelled) else None,
                          np.random.default_rng([inputs.seed, inputs.round_index]))


def _diversity(inputs: SelectionInputs, budget: int, options: dict[str, Any]) -> np.ndarray:
    return diversity_select(inputs.scores, inputs.costs, inputs.features, budget, seed=inputs.seed, **options)


def _fds(inputs: SelectionInputs, budget: int, options: dict[str, Any]) -> np.ndarray:
    return fds_select(rank_descending(inputs.scores), inputs.scene_of, inputs.xyz, inputs.features, budget, **options)


def _jopro(inputs: SelectionInputs, budget: int, options: dict[str, Any]) -> np.ndarray:
    options = dict(options)
    shares = None
    if options.pop("budget_split", "per-scene") == "per-scene":  # the release: each room its share
        shares = dict(enumerate(split_budget(budget, inputs.pools)))
    anchors = inputs.prototypes or {}
    chosen = jopro_select(-inputs.scores, inputs.scene_of, inputs.xyz, inputs.features, anchors["protos"],
                          anchors["present"], budget, candidate_fraction=1.0, scene_budgets=shares,
                          scene_candidates=None if inputs.candidates is None else np.asarray(inputs.candidates),
                          **options)
    return chosen[inputs.costs[chosen] > 0]


@dataclass(frozen=True)
class SelectorSpec:
    name: str
    select: Callable[..., np.ndarray]
    needs_features: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    outdoor_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    choose: Callable[[SelectionInputs, int, dict[str, Any]], np.ndarray] | None = None
    needs: tuple[str, ...] = ()  # beyond scores and costs: features, xyz, labelled_features, prototypes, point
    per_scene_budgets: bool = False  # accepts "N/scene" budgets (top-k only)

    def default_options(self, indoor: bool = True) -> dict[str, Any]:
        return {**self.options, **({} if indoor else self.outdoor_options)}


SELECTORS: dict[str, SelectorSpec] = {
    spec.name: spec
    for spec in (
        SelectorSpec("topk", select_topk, description="highest scores first within the budget", choose=_topk,
                     per_scene_budgets=True),
        SelectorSpec("kcenter", kcenter_greedy, needs_features=True, choose=_kcenter,
                     needs=("features", "labelled_features"),
                     description="core-set k-center greedy on pooled unit features"),
        SelectorSpec("diversity", diversity_select, needs_features=True, choose=_diversity, needs=("features",),
                     options={"clusters": "auto", "decay": DEFAULT_DECAY, "trim": None, "overshoot": False},
                     outdoor_options={"trim": 0.1},
                     description="ReDAL: k-means on region features (one cluster per 55 regions, or "
                                 "clusters=N), decay^(j-1) for the j-th region of a cluster; overshoot=true "
                                 "takes the region that crosses the budget, as the release"),
        SelectorSpec("jopro", jopro_select, needs_features=True, choose=_jopro,
                     needs=("features", "xyz", "prototypes"),
                     options={"radius": 0.45, "tau": 0.8, "budget_split": "per-scene"},
                     description="JoPro: spatial suppression within radius, one candidate per prototype "
                                 "above cosine tau, each scene its share of the budget (budget_split=global: "
                                 "one ranking) (score with --scorer fms)"),
        SelectorSpec("fds", fds_select, needs_features=True, choose=_fds, needs=("features", "xyz", "point"),
                     options={"radius": 0.20, "tau": 0.8},
                     description="HPAL: skip a point within radius of an accepted one with cosine > tau"),
    )
}


def _check_selector(name: str, entry: object) -> SelectorSpec:
    if not isinstance(entry, SelectorSpec) or entry.choose is None:
        raise TypeError("expected a pcal_cli.selection.SelectorSpec with choose()")
    return entry if entry.name == name else replace(entry, name=name)


def all_selectors() -> dict[str, SelectorSpec]:
    """The built-in selectors and those of installed plugins (entry point group ``pcal.selectors``)."""
    from pcal_cli.plugins import load_plugins

    load_plugins("selectors", SELECTORS, _check_selector)
    return SELECTORS


def get_selector(name: str) -> SelectorSpec:
    """The selector registered as ``name`` (case-insensitive); :class:`PcalError` if unknown."""
    from pcal_cli.plugins import lookup

    return lookup("selectors", SELECTORS, _check_selector, name)


__all__ = ["SELECTORS", "Budget", "SelectionInputs", "SelectorSpec", "diversity_select", "fds_select", "get_selector",
           "kcenter_greedy",
           "parse_budget", "select_topk"]
