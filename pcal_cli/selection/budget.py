"""Labelling budgets as the user writes them: ``3%``, ``20000`` or ``20/scene``.

| text        | kind        | meaning                                                     |
|-------------|-------------|-------------------------------------------------------------|
| ``3%``      | ``percent`` | 3 % of the training split's points (0 < p <= 100, decimals ok) |
| ``20000``   | ``points``  | 20 000 points                                               |
| ``20/scene``| ``per_scene`` | 20 units (regions, cells, points...) in every scene       |

Budgets are spent in points (``Budget.points``); a per-scene budget counts units instead and is
applied scene by scene (see :mod:`pcal_cli.selection.topk`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Literal

from pcal_cli.errors import PcalError

BudgetKind = Literal["percent", "points", "per_scene"]

_PERCENT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*%")
_POINTS = re.compile(r"\d+")
_PER_SCENE = re.compile(r"(\d+)\s*/\s*scenes?")

_HELP = ("write a percentage of the training points (3%), a number of points (20000) "
         "or units per scene (20/scene)")


@dataclass(frozen=True)
class Budget:
    """A parsed budget: ``kind`` and ``value`` (a Decimal percentage, or an int)."""

    kind: BudgetKind
    value: Decimal | int

    def points(self, total_train_points: int) -> int:
        """The budget in points for a training split of ``total_train_points`` points.

        A percentage is rounded down (``3%`` of 1001 points is 30). Raises :class:`PcalError`
        for a per-scene budget, or for more points than the training split has.
        """
        if total_train_points < 0:
            raise PcalError(f"the training split cannot have {total_train_points} points")
        if self.kind == "per_scene":
            raise PcalError(f"budget {self} counts units per scene, not points")
        if self.kind == "percent":
            exact = Decimal(total_train_points) * Decimal(self.value) / 100
            return int(exact.to_integral_value(rounding=ROUND_FLOOR))
        if self.value > total_train_points:
            raise PcalError(
                f"budget of {self.value} points exceeds the {total_train_points} training points"
            )
        return int(self.value)

    @property
    def units_per_scene(self) -> int:
        """The number of units per scene of a ``per_scene`` budget."""
        if self.kind != "per_scene":
            raise PcalError(f"budget {self} is counted in points, not units per scene")
        return int(self.value)

    def __str__(self) -> str:
        if self.kind == "percent":
            return f"{self.value}%"
        return f"{self.value}/scene" if self.kind == "per_scene" else str(self.value)


def parse_budget(text: str | Budget) -> Budget:
    """Parse ``"3%"``, ``"20000"`` or ``"20/scene"``; :class:`PcalError` (one line) otherwise.
    A :class:`Budget` parsed before passes through unchanged."""
    if isinstance(text, Budget):
        return text
    raw = str(text).strip().lower().replace("_", "")
    if len(raw) > 40:
        raise PcalError(f"cannot read budget {text[:20]!r}...: too long; {_HELP}")
    if m := _PERCENT.fullmatch(raw):
        value = Decimal(m.group(1))
        if not 0 < value <= 100:
            raise PcalError(f"budget {text!r}: a percentage must lie in (0, 100]")
        return Budget("percent", Decimal(format(value.normalize(), "f")))  # "3.0%" -> 3
    if _POINTS.fullmatch(raw):
        if int(raw) <= 0:
            raise PcalError(f"budget {text!r}: the number of points must be positive")
        return Budget("points", int(raw))
    if m := _PER_SCENE.fullmatch(raw):
        if int(m.group(1)) <= 0:
            raise PcalError(f"budget {text!r}: the number of units per scene must be positive")
        return Budget("per_scene", int(m.group(1)))
    raise PcalError(f"cannot read budget {text!r}: {_HELP}")


def parse_schedule(text: str) -> list[Budget]:
    """Per-round budgets: ``"1%"`` (every round) or ``"0.5%,1%,1%,2%"`` (round by round, the last
    one repeated); each item as :func:`parse_budget`."""
    items = [part.strip() for part in str(text).split(",")]
    if not items or any(not part for part in items):
        raise PcalError(f"cannot read budget {text!r}: {_HELP}, or several of them separated by commas "
                        "(one per round)")
    return [parse_budget(part) for part in items]


def split_budget(budget: int, weights) -> list[int]:
    """``budget`` points split over groups in proportion to ``weights`` (e.g. each scene's pool),
    rounded by largest remainder so the parts sum to ``budget`` exactly (ties to the lower index)."""
    import numpy as np

    weights = np.asarray(weights, dtype=np.float64)
    if budget < 0 or (weights < 0).any():
        raise PcalError(f"cannot split a budget of {budget} over weights {weights.tolist()[:5]}")
    if not len(weights) or weights.sum() == 0:
        return [0] * len(weights)
    exact = budget * weights / weights.sum()
    parts = np.floor(exact).astype(np.int64)
    left = int(budget - parts.sum())
    order = np.lexsort((np.arange(len(weights)), -(exact - parts)))
    parts[order[:left]] += 1
    return parts.tolist()
