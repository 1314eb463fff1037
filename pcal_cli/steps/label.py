"""``pcal label --oracle``: reveal the ground truth of round N's queries as round N + 1."""

from __future__ import annotations

import numpy as np

from pcal_cli.annotation.export import lazy_query_scenes, load_queries
from pcal_cli.project import Project
from pcal_cli.rounds import (LABELLING_FILE, QUERIES_FILE, LabelCommit, LazyMapping, commit_labels, read_json,
                             sync_ledger)
from pcal_cli.steps.pool import reveal


def oracle_round(project: Project, round_index: int) -> LabelCommit:
    """Create round ``round_index + 1`` with the queried units' ground truth revealed."""
    new_round = round_index + 1
    if project.round_dir(new_round).exists():
        sync_ledger(project)  # a run killed between the round's rename and the ledger update
        return LabelCommit(new_round, 0, {}, skipped=True)
    queries = load_queries(project, round_index)
    asked = lazy_query_scenes(project, round_index, queries)
    per_scene: dict[str, set[int]] = {}
    for entry in queries["queries"]:
        per_scene.setdefault(entry["scene"], set()).add(int(entry["unit"]))
    units = {name: len(per_scene[name]) for name in asked}

    def answered(name: str) -> np.ndarray:  # one scene read at a time, when commit_labels writes it
        query = asked[name]
        new = query.known.copy()
        new[query.mask] = reveal(project, name, query.mask)[query.mask]
        return new

    return commit_labels(project, new_round, LazyMapping(asked, answered), source="oracle", unit=queries["unit"],
                         units=units,
                         details={"queries_round": round_index, "spent_points": queries["spent_points"],
                                  "budget_points": queries.get("budget_points"),
                                  "overshoot_points": queries.get("overshoot_points", 0)})


def oracle_target(project: Project, latest: int) -> int:
    """The round whose queries ``pcal label --oracle`` answers when no ``--round`` is given: the
    latest round, or the one before when the latest was made by answering it (a rerun)."""
    folder = project.round_dir(latest)
    if latest > 0 and not (folder / QUERIES_FILE).is_file() and (folder / LABELLING_FILE).is_file():
        record = read_json(folder / LABELLING_FILE, "labelling record")
        if record.get("source") in ("oracle", "import") and record.get("round") == latest:
            return latest - 1
    return latest
