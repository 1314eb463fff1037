"""The round summary of ``pcal view``: per-class IoU, the queries per scene, the learning curve.

Read from the round's ``metrics.json`` and ``queries.json`` and from every round's
``metrics.json`` (through :func:`pcal_cli.evaluation.report.collect_run`); nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pcal_cli.evaluation.report import RunReport, collect_run
from pcal_cli.project import Project
from pcal_cli.view.data import read_queries

EVALUATION_SPLITS = ("test", "val")  # the first with metrics gives the IoU bars


@dataclass
class CurveLine:
    """mIoU (fractions) against the labelled share of training points (%), per evaluated round."""

    split: str
    rounds: list[int]
    labelled_percent: list[float]
    miou: list[float]
    full_miou: float | None


@dataclass
class SceneSelection:
    """What ``queries.json`` selected in one scene: units, their unlabelled points, best score."""

    scene: str
    units: int
    points: int
    best_score: float


@dataclass
class RoundOverview:
    """Everything the overview section shows about one round."""

    round: int
    classes: list[str]
    colors: list[list[int]]
    iou_split: str | None = None
    iou: list[float | None] = field(default_factory=list)
    full_iou: list[float | None] | None = None
    miou: float | None = None
    curves: list[CurveLine] = field(default_factory=list)
    selection: list[SceneSelection] = field(default_factory=list)
    queries: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def scene_selection(record: dict[str, Any], scenes: list[str]) -> list[SceneSelection]:
    """The queries of a ``queries.json`` record grouped by scene, in the order of ``scenes``."""
    grouped: dict[str, SceneSelection] = {}
    for query in record.get("queries", []):
        name = str(query.get("scene"))
        entry = grouped.setdefault(name, SceneSelection(name, 0, 0, float("-inf")))
        entry.units += 1
        entry.points += int(query.get("points") or 0)
        entry.best_score = max(entry.best_score, float(query.get("score", float("-inf"))))
    order = {name: i for i, name in enumerate(scenes)}
    return sorted(grouped.values(), key=lambda s: (order.get(s.scene, len(order)), s.scene))


def curve_line(run: RunReport) -> CurveLine | None:
    """The learning curve of one run on its split, ``None`` when no round is evaluated there."""
    rows = run.evaluated
    if not rows:
        return None
    return CurveLine(split=run.split, rounds=[r.round for r in rows],
                     labelled_percent=[r.labelled_percent for r in rows], miou=[float(r.miou) for r in rows],
                     full_miou=None if run.full is None else run.full.miou)


def round_overview(project: Project, round_index: int) -> RoundOverview:
    """The summary of round ``round_index`` (which must exist)."""
    config = project.config
    overview = RoundOverview(round=round_index, classes=list(config.classes), colors=[list(c) for c in config.colors])
    for split in EVALUATION_SPLITS:
        run = collect_run(project.root, split)
        line = curve_line(run)
        if line is not None:
            overview.curves.append(line)
        row = next((r for r in run.rows if r.round == round_index), None)
        if overview.iou_split is None and row is not None and row.evaluation is not None:
            overview.iou_split = split
            overview.miou = row.miou
            overview.iou = [row.evaluation.iou.get(name) for name in overview.classes]
            if run.full is not None:
                overview.full_iou = [run.full.iou.get(name) for name in overview.classes]
    if overview.iou_split is None:
        overview.notes.append(f"round {round_index} is not evaluated yet: no IoU per class "
                              f"(pcal evaluate --round {round_index})")
    if not overview.curves:
        overview.notes.append("no round is evaluated yet: no learning curve")
    record = read_queries(project, round_index)
    if record is None:
        overview.notes.append(f"round {round_index} has no queries.json: nothing selected yet (pcal select)")
    else:
        overview.queries = {key: record.get(key) for key in ("unit", "cell", "scorer", "selector", "budget",
                                                             "budget_points", "spent_points", "pool_points")}
        overview.selection = scene_selection(record, project.scenes("train"))
    return overview
