"""Named options of scorers, selectors and training recipes (``-o KEY=VALUE`` on the command line).

Each scorer or selector declares its options as a dict of defaults; the type of a default is the
type of the option (a tuple of floats is written ``1,0.1,0.05``). Unknown names are refused with
the closest known name suggested, and the resolved values are recorded with the round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pcal_cli.errors import PcalError, did_you_mean


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``["decay=0.9", "clusters=50"]`` -> ``{"decay": "0.9", "clusters": "50"}``."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not value.strip():
            raise PcalError(f"option '{pair}' must look like KEY=VALUE (for example decay=0.9)")
        parsed[key] = value.strip()
    return parsed


def resolve_options(defaults: Mapping[str, Any], given: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``defaults`` updated with ``given`` (strings are converted to each default's type)."""
    resolved = dict(defaults)
    for key, value in given.items():
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise PcalError(f"{what} has no option '{key}' (its options: {known}){did_you_mean(key, defaults)}")
        resolved[key] = convert(value, defaults[key], f"{what} option '{key}'")
    return resolved


def convert(value: Any, default: Any, where: str) -> Any:
    """``value`` as the type of ``default`` (bool, int, float, str, tuple of floats, or None=float)."""
    if not isinstance(value, str):
        return tuple(value) if isinstance(default, tuple) else value
    text = value.strip()
    try:
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float) or default is None:
            return None if text.lower() == "none" else float(text)
        if isinstance(default, tuple):
            return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise PcalError(f"{where}: cannot read '{value}' as {type(default).__name__}") from None
    return text
