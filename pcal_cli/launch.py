"""How this process was launched, read from the environment only (no torch import)."""

from __future__ import annotations

import os

from pcal_cli.errors import PcalError


def world_size_from_env() -> int:
    """The world size torchrun gave this process (``WORLD_SIZE``; 1 when not launched by it)."""
    text = os.environ.get("WORLD_SIZE", "").strip()
    if not text:
        return 1
    try:
        size = int(text)
    except ValueError:
        raise PcalError(f"WORLD_SIZE must be an integer, got {text!r}") from None
    if size < 1:
        raise PcalError(f"WORLD_SIZE must be at least 1, got {size}")
    return size
