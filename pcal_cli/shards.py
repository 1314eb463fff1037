"""Shards: the i-th of N interleaved slices of a split's scenes (``--shard i/N`` of score and evaluate)."""

from __future__ import annotations

from pcal_cli.errors import PcalError


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` (1-based) -> (i, N); None stays None."""
    if text is None:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise PcalError(f"--shard must look like i/N (for example 2/4), got '{text}'") from None
    if not 1 <= i <= n:
        raise PcalError(f"--shard {text}: i must be between 1 and N")
    return i, n


def shard_scenes(names: list[str], shard: tuple[int, int] | None) -> list[str]:
    """The i-th of N interleaved slices of the sorted scene list."""
    if shard is None:
        return list(names)
    i, n = shard
    return sorted(names)[i - 1 :: n]
