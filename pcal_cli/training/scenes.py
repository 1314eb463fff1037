"""The training scenes of a run, read when a step draws them, within a memory budget.

Training used to read every labelled scene into one list before the first step: 20,000 scans of
120,000 points are 70 GB. :class:`SceneList` is a sequence over the scene names instead; an item
is read when asked for and kept in a least-recently-used cache of at most ``cache_bytes``
(default 2 GiB), so a small project is read once and a large one in bounded memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields, is_dataclass
from typing import Any

import numpy as np

CACHE_BYTES = 2 * 2**30


def nbytes(item: Any) -> int:
    """Bytes of the numpy arrays in ``item`` (a tuple of arrays and dataclasses such as Scene)."""
    if isinstance(item, np.ndarray):
        return item.nbytes
    if isinstance(item, (tuple, list)):
        return sum(nbytes(part) for part in item)
    if is_dataclass(item) and not isinstance(item, type):
        return sum(nbytes(getattr(item, f.name)) for f in fields(item))
    return 0


class SceneList(Sequence):
    """Items ``load(name)`` for fixed names, read on demand and cached up to ``cache_bytes``."""

    def __init__(self, names: Iterable[str], load: Callable[[str], Any], cache_bytes: int | None = None) -> None:
        self.names = list(names)
        self._load = load
        self._cache: OrderedDict[int, tuple[Any, int]] = OrderedDict()
        self._cached_bytes = 0
        self.cache_bytes = CACHE_BYTES if cache_bytes is None else int(cache_bytes)

    @classmethod
    def of_usable(cls, names: Iterable[str], load: Callable[[str], Any | None],
                  cache_bytes: int | None = None) -> SceneList:
        """The names whose ``load`` is not None (each read once here; the cache keeps what fits)."""
        kept = cls([], load, cache_bytes)
        for name in names:
            item = load(name)
            if item is not None:
                kept.names.append(name)
                kept._remember(len(kept.names) - 1, item)
        return kept

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        if isinstance(index, slice):
            raise TypeError("SceneList does not slice")
        index = int(index)
        if index < 0:
            index += len(self.names)
        if not 0 <= index < len(self.names):
            raise IndexError(index)
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index][0]
        item = self._load(self.names[index])
        self._remember(index, item)
        return item

    def _remember(self, index: int, item: Any) -> None:
        size = nbytes(item)
        self._cache[index] = (item, size)
        self._cached_bytes += size
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, (_, dropped) = self._cache.popitem(last=False)
            self._cached_bytes -= dropped
