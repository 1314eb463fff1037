"""Budgeted selectors, by name: ``get_selector("topk")``.

- ``topk`` (:func:`select_topk`): highest scores first, skip-and-continue within the budget.
- ``kcenter`` (:func:`kcenter_greedy`): core-set farthest-first on pooled unit features.
- ``diversity`` (:func:`diversity_select`): ReDAL's per-cluster score decay on pooled features.
- ``fds`` (:func:`fds_select`): HPAL's feature-distance suppression of near, similar points.
- ``jopro``: JoPro's spatial and prototype suppression of the ``fms`` candidates.

All return row indices in selection order, never spend more than the budget, never take a unit
of cost 0, and are deterministic (ties by row order; randomness only from the given seed). A
:class:`SelectorSpec` also says whether the selector needs pooled unit features and which
options (``-o KEY=VALUE``) it takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pcal_cli.errors import PcalError, did_you_mean
from pcal_cli.selection.budget import Budget, parse_budget
from pcal_cli.selection.diversity import DEFAULT_DECAY, diversity_select
from pcal_cli.jopro.select import jopro_select
from pcal_cli.selection.fds import fds_select
from pcal_cli.selection.kcenter import kcenter_greedy
from pcal_cli.selection.topk import select_topk


@dataclass(frozen=True)
class SelectorSpec:
    name: str
    select: Callable[..., np.ndarray]
    needs_features: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    outdoor_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def default_options(self, indoor: bool = True) -> dict[str, Any]:
        return {**self.options, **({} if indoor else self.outdoor_options)}


SELECTORS: dict[str, SelectorSpec] = {
    spec.name: spec
    for spec in (
        SelectorSpec("topk", select_topk, description="highest scores first within the budget"),
        SelectorSpec("kcenter", kcenter_greedy, needs_features=True,
                     description="core-set k-center greedy on pooled unit features"),
        SelectorSpec("diversity", diversity_select, needs_features=True,
                     options={"clusters": "auto", "decay": DEFAULT_DECAY, "trim": None, "overshoot": False},
                     outdoor_options={"trim": 0.1},
                     description="ReDAL: k-means on region features (one cluster per 55 regions, or "
                                 "clusters=N), decay^(j-1) for the j-th region of a cluster; overshoot=true "
                                 "takes the region that crosses the budget, as the release"),
        SelectorSpec("jopro", jopro_select, needs_features=True,
                     options={"radius": 0.45, "tau": 0.8, "budget_split": "per-scene"},
                     description="JoPro: spatial suppression within radius, one candidate per prototype "
                                 "above cosine tau, each scene its share of the budget (budget_split=global: "
                                 "one ranking) (score with --scorer fms)"),
        SelectorSpec("fds", fds_select, needs_features=True, options={"radius": 0.20, "tau": 0.8},
                     description="HPAL: skip a point within radius of an accepted one with cosine > tau"),
    )
}


def get_selector(name: str) -> SelectorSpec:
    """The selector registered as ``name`` (case-insensitive); :class:`PcalError` if unknown."""
    key = name.strip().lower()
    if key not in SELECTORS:
        raise PcalError(f"unknown selector {name!r}; choose one of: {', '.join(sorted(SELECTORS))}"
                        f"{did_you_mean(name, SELECTORS)}")
    return SELECTORS[key]


__all__ = ["SELECTORS", "Budget", "SelectorSpec", "diversity_select", "fds_select", "get_selector",
           "kcenter_greedy",
           "parse_budget", "select_topk"]
