"""Round folders: which files a round holds and how its label files are read.

    rounds/rNNN/labels/<scene>.npy   labels known in round N (int16, -1 unknown), one per
                                     training scene that has any known label
    rounds/rNNN/model.pt             checkpoint trained on those labels
    rounds/rNNN/metrics.json         evaluation of model.pt, keyed by split

Training reads only the label files, never the ground truth stored in the PLYs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcal_cli.errors import PcalError
from pcal_cli.project import Project

FULL_DIR = "full"  # the full-supervision reference: PROJ/full/model.pt


def run_dir(project: Project, round_index: int | None) -> Path:
    """The folder of round ``round_index``, or of the full-supervision reference when ``None``."""
    return project.root / FULL_DIR if round_index is None else project.round_dir(round_index)


def labels_dir(project: Project, round_index: int) -> Path:
    return project.round_dir(round_index) / "labels"


def latest_round(project: Project) -> int:
    """The highest round present; none at all is a clear error."""
    rounds = project.rounds()
    if not rounds:
        raise PcalError(f"{project.root}: no labelling rounds yet (run 'pcal seed', or train with --full)")
    return rounds[-1]


def resolve_round(project: Project, round_index: int | None) -> int:
    """``round_index`` checked to exist, or the latest round when ``None``."""
    if round_index is None:
        return latest_round(project)
    if not project.round_dir(round_index).is_dir():
        raise PcalError(f"{project.root}: round {round_index} does not exist (rounds: {project.rounds() or 'none'})")
    return round_index


def load_labels(project: Project, round_index: int, scene: str, num_points: int) -> np.ndarray:
    """The labels of ``scene`` known in a round (all -1 when the scene has no label file)."""
    path = labels_dir(project, round_index) / f"{scene}.npy"
    if not path.is_file():
        return np.full(num_points, -1, dtype=np.int16)
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PcalError(f"{path}: unreadable label file ({str(exc).splitlines()[0]})") from None
    if labels.shape != (num_points,) or not np.issubdtype(labels.dtype, np.integer):
        raise PcalError(f"{path}: expected {num_points} integer labels, found shape {labels.shape} {labels.dtype}")
    num_classes = project.config.num_classes
    if labels.size and (labels.min() < -1 or labels.max() >= num_classes):
        raise PcalError(f"{path}: label ids outside -1..{num_classes - 1}")
    return labels.astype(np.int16)


def labelled_scenes(project: Project, round_index: int) -> list[str]:
    """Training scenes that have a label file in the round."""
    folder = labels_dir(project, round_index)
    return [name for name in project.scenes("train") if (folder / f"{name}.npy").is_file()]
