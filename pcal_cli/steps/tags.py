"""Scene-level tags as labels (WSegPC): the oracle, a person's tag file, and the round's tags.

Tags live in ``rounds/rNNN/tags.json`` (``pcal_cli.weak.tags.tags_to_json``), carried into every
later round and only ever growing. A tagging event creates the next round (round 0 when there is
none) with the same commit as point labels; the ledger counts one unit per tagged scene and zero
points, so tags never spend the point budget.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcal_cli.data.ply import read_ply
from pcal_cli.errors import PcalError
from pcal_cli.project import Project
from pcal_cli.rounds import TAGS_FILE, LabelCommit, commit_labels, load_tags, read_json  # noqa: F401
from pcal_cli.weak.tags import read_tags_file, tags_from_labels, tags_to_json


def commit_tags(project: Project, tags: dict[str, np.ndarray], source: str) -> LabelCommit:
    """The next round = the previous one plus ``tags`` (union with the tags known before)."""
    rounds = project.rounds()
    new_round = rounds[-1] + 1 if rounds else 0
    known = load_tags(project, rounds[-1]) if rounds else {}
    merged = dict(known)
    changed = {}
    for name, value in tags.items():
        old = known.get(name)
        new = value if old is None else (old | value)
        if old is None or not np.array_equal(old, new):
            changed[name] = 1
        merged[name] = new
    if not changed:
        raise PcalError("these tags are known already: nothing new to commit")
    return commit_labels(project, new_round, {}, source=source, unit="tags", units=changed,
                         details={"tags": len(changed)},
                         extra_files={TAGS_FILE: tags_to_json(merged, project.config.classes)})


def oracle_tags(project: Project) -> LabelCommit:
    """Tags of every training scene from its ground truth (the oracle, for experiments)."""
    names = project.scenes("train")
    if not names:
        raise PcalError(f"{project.root}: the project has no training scenes")
    num_classes = project.config.num_classes
    tags = {name: tags_from_labels(read_ply(project.scene_path("train", name)).label, num_classes)
            for name in names}
    return commit_tags(project, tags, "oracle")


def import_tags(project: Project, path: Path) -> LabelCommit:
    """A person's tags from a CSV / YAML / JSON file (``pcal_cli.weak.tags.read_tags_file``)."""
    tags = read_tags_file(path, project.config.classes, project.scenes("train"))
    if not tags:
        raise PcalError(f"{path}: no scene tagged")
    return commit_tags(project, tags, "import")
