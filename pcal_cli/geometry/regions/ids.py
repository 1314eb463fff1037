"""What every region builder shares: ids renumbered ``0..R-1`` and the check of integer options."""

from __future__ import annotations

from typing import Any

import numpy as np

from pcal_cli.errors import PcalError


def contiguous(label: np.ndarray) -> np.ndarray:
    """Ids renumbered ``0..R-1``, keeping their order."""
    _, out = np.unique(label, return_inverse=True)
    return out.reshape(-1).astype(np.int64)


def check_int(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (integral floats such as 100.0 from a config accepted)."""
    integral = isinstance(value, (int, np.integer)) or (
        isinstance(value, (float, np.floating)) and float(value).is_integer())
    if isinstance(value, bool) or not integral or value < minimum:
        raise PcalError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
