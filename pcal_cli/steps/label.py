"""``pcal label --oracle``: reveal the ground truth of round N's queries as round N + 1."""

from __future__ import annotations

from pcal_cli.annotation.export import load_queries, query_scenes
from pcal_cli.project import Project
from pcal_cli.rounds import LabelCommit, commit_labels
from pcal_cli.steps.pool import reveal


def oracle_round(project: Project, round_index: int) -> LabelCommit:
    """Create round ``round_index + 1`` with the queried units' ground truth revealed."""
    new_round = round_index + 1
    if project.round_dir(new_round).exists():
        return LabelCommit(new_round, 0, {}, skipped=True)
    queries = load_queries(project, round_index)
    updates, units = {}, {}
    for name, asked in query_scenes(project, round_index, queries).items():
        new = asked.known.copy()
        new[asked.mask] = reveal(project, name, asked.mask)[asked.mask]
        updates[name] = new
        units[name] = len(asked.units)
    return commit_labels(project, new_round, updates, source="oracle", unit=queries["unit"], units=units,
                         details={"queries_round": round_index, "spent_points": queries["spent_points"]})
