"""Budgeted selectors, by name: ``get_selector("topk")(scores, costs, budget)``.

- ``topk`` (:func:`select_topk`): highest scores first, skip-and-continue within the budget.
- ``kcenter`` (:func:`kcenter_greedy`): core-set farthest-first on pooled unit features.

Both return row indices in selection order, never spend more than the budget, never take a unit
of cost 0, and are deterministic (ties by row order; randomness only from the given seed).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pcal_cli.errors import PcalError
from pcal_cli.selection.budget import Budget, parse_budget
from pcal_cli.selection.kcenter import kcenter_greedy
from pcal_cli.selection.topk import select_topk

SELECTORS: dict[str, Callable[..., np.ndarray]] = {"topk": select_topk, "kcenter": kcenter_greedy}


def get_selector(name: str) -> Callable[..., np.ndarray]:
    """The selector registered as ``name`` (case-insensitive); :class:`PcalError` if unknown."""
    key = name.strip().lower()
    if key not in SELECTORS:
        raise PcalError(f"unknown selector {name!r}; choose one of: {', '.join(sorted(SELECTORS))}")
    return SELECTORS[key]


__all__ = ["SELECTORS", "Budget", "get_selector", "kcenter_greedy", "parse_budget", "select_topk"]
