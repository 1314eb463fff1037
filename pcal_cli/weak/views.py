"""The training scenes of one scene-tag step, as the views see them: tag drop applied, and every
point still knowing which point of the scene it is (to find its row of the image features).

:class:`StepScenes` wraps the recipe's list of ``(scene, known labels, tags)`` for one step and
is handed to the two-view batch builder in its place. Indexing it gives the scene with the
dropped surfaces removed (:func:`pcal_cli.weak.tagdrop.tag_drop`), the known labels of the points
that stay, and the view's tags. The drop's random draws come from
``numpy.random.default_rng([seed, step, 1, scene index])``: deterministic per ``(seed, step)``
like the rest of training, independent of which other scenes the step draws, and separate from
the step's own generator, so the crops and augmentations are the draws they would be without the
drop (with ``p = 0`` the step is bit for bit what it was before tag drop existed).

Scenes come back as :class:`IndexedScene`, whose ``point_index`` (the row of each point in the
scene's PLY) survives :meth:`~pcal_cli.data.scene.Scene.subset`, so the cropped part of a view
still knows its points' rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from pcal_cli.data.scene import Scene
from pcal_cli.weak.tagdrop import tag_drop

#: The third word of the tag drop's generator seed ``[seed, step, 1, scene index]``.
DROP_STREAM = 1


@dataclass
class IndexedScene(Scene):
    """A :class:`Scene` whose points remember their row in the original scene (``point_index``)."""

    point_index: np.ndarray | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.point_index is None:
            self.point_index = np.arange(len(self.xyz), dtype=np.int64)
        self.point_index = np.asarray(self.point_index, dtype=np.int64).reshape(len(self.xyz))

    def subset(self, index: np.ndarray) -> IndexedScene:
        part = super().subset(index)
        return IndexedScene(**{f.name: getattr(part, f.name) for f in fields(Scene)},
                            point_index=self.point_index[index])


def indexed(scene: Scene, keep: np.ndarray | None = None) -> IndexedScene:
    """``scene`` (restricted to the bool mask ``keep``) as an :class:`IndexedScene`."""
    full = IndexedScene(**{f.name: getattr(scene, f.name) for f in fields(Scene)})
    return full if keep is None else full.subset(keep)


class StepScenes(Sequence):
    """``scenes`` (a list of ``(scene, known, tags)``) as step ``step`` sees them.

    ``surfaces(index)`` gives scene ``index``'s structural surfaces (cached by the caller); ``p``
    is the drop probability. Items are computed on first access and kept, so the tags of a view
    can be read back after the batch is built (:meth:`tags`, :meth:`dropped`).
    """

    def __init__(self, scenes: Sequence, surfaces: Callable[[int], dict[int, np.ndarray]], p: float,
                 seed: int, step: int) -> None:
        self.scenes, self.surfaces, self.p, self.seed, self.step = scenes, surfaces, float(p), seed, step
        self._items: dict[int, tuple[Any, np.ndarray, np.ndarray]] = {}
        self._dropped: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> tuple[IndexedScene, np.ndarray, np.ndarray]:
        index = int(index)
        if index not in self._items:
            scene, known, tags = self.scenes[index][:3]
            keep, view_tags, dropped = np.ones(len(scene), dtype=bool), np.asarray(tags, dtype=bool), []
            if self.p > 0:
                rng = np.random.default_rng([self.seed, self.step, DROP_STREAM, index])
                keep, view_tags, dropped = tag_drop(tags, scene.region, known, self.surfaces(index), self.p, rng)
            if dropped:
                self._items[index] = (indexed(scene, keep), known[keep], view_tags)
            else:
                self._items[index] = (indexed(scene), known, view_tags)
            self._dropped[index] = dropped
        return self._items[index]

    def tags(self, index: int) -> np.ndarray:
        """The tags of scene ``index``'s view (its tags less the dropped classes)."""
        return self[index][2]

    def dropped(self, index: int) -> list[int]:
        """The classes dropped from scene ``index``'s view."""
        self[index]
        return self._dropped[int(index)]
