"""What ``pcal report`` shows, collected from a project's files (no plotting, no printing).

One :class:`RunReport` per project directory (one AL run = one method and one seed): a row per
round with the labelled share of the training split, what the round added (points, units, unit
kind, source), the metrics of the round's model on one split and its ratio to the
full-supervision reference; plus the budget spent per unit kind from the ledger.
:func:`group_runs` groups runs by method and :func:`curve` reduces a group to mean, sample std,
min and max of mIoU per round, the numbers behind the learning curve.

Files read (none is written): ``pcal.yaml``, the PLY headers of the training scenes,
``rounds/rNNN/{labels/*.npz,labelling.json,metrics.json,round.json,queries.json}``,
``full/metrics.json`` and ``ledger.jsonl``.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pcal_cli.data.datasets.base import SPLITS
from pcal_cli.data.ply import read_ply
from pcal_cli.errors import PcalError
from pcal_cli.project import Project
from pcal_cli.rounds import (FULL_DIR, LABELLING_FILE, QUERIES_FILE, UNKNOWN, labelled_counts, load_labels,
                             read_json, read_ledger)
from pcal_cli.units import DEFAULT_CELL, query_mask, unit_ids
from pcal_cli.layout import METRICS_FILE, ROUND_FILE



@dataclass
class Evaluation:
    """The metrics of one model on one split (``miou``/``oa`` are fractions, ``None`` if unknown)."""

    miou: float | None
    oa: float | None
    iou: dict[str, float | None]


@dataclass
class RoundRow:
    """One round of a run: its labels, what it added, and its evaluation (``None`` when absent)."""

    round: int
    labelled_points: int
    labelled_percent: float
    points_added: int | None
    units_added: int | None
    unit: str | None
    source: str | None
    evaluation: Evaluation | None
    ratio_to_full: float | None
    settings: dict[str, Any] = field(default_factory=dict)
    void_added: int | None = None  # of points_added, how many had no valid class (void)

    @property
    def miou(self) -> float | None:
        return None if self.evaluation is None else self.evaluation.miou

    @property
    def oa(self) -> float | None:
        return None if self.evaluation is None else self.evaluation.oa


@dataclass
class BudgetLine:
    """Ledger totals for one (unit kind, source) pair."""

    unit: str
    source: str
    events: int
    units: int
    points: int
    percent: float


@dataclass
class RunReport:
    """Everything reported about one project directory, on one evaluation split."""

    root: Path
    name: str
    method: str
    methods: list[str]
    seed: int | None
    split: str
    dataset: str
    classes: list[str]
    training_points: int
    rows: list[RoundRow]
    full: Evaluation | None
    budget: list[BudgetLine]
    ledger_points: int
    notes: list[str]
    seed_report: dict[str, Any] | None = None  # rounds/r000/seed.json (SeedAL's choice), if any

    @property
    def evaluated(self) -> list[RoundRow]:
        """Rounds with a known mIoU on the split, ascending."""
        return [row for row in self.rows if row.miou is not None]

    def row(self, round_index: int) -> RoundRow:
        for row in self.rows:
            if row.round == round_index:
                return row
        raise PcalError(f"{self.root}: round {round_index} does not exist (rounds: "
                        f"{[r.round for r in self.rows] or 'none'})")


@dataclass
class CurvePoint:
    """One round of a method's learning curve, over the runs evaluated at that round.

    ``miou_*`` are fractions; ``miou_std`` is the sample standard deviation (ddof=1), 0 for one run.
    """

    round: int
    labelled_percent: float
    miou_mean: float
    miou_std: float
    miou_min: float
    miou_max: float
    runs: int
    points_added: float | None = None  # mean points the round added (bought by the previous round)
    void_share: float | None = None  # of those points, the share that turned out void


def collect_run(project_root: str | os.PathLike, split: str = "test") -> RunReport:
    """Read one project's rounds, metrics on ``split``, full reference and ledger.

    A project with no rounds and no full-supervision reference is a :class:`PcalError`; rounds
    without metrics are kept (their evaluation is ``None``) and listed in ``notes``.
    """
    if split not in SPLITS:
        raise PcalError(f"unknown split '{split}' (choose from {', '.join(SPLITS)})")
    project = Project.open(project_root)
    config = project.config
    rounds = project.rounds()
    full = _evaluation(project.root / FULL_DIR / METRICS_FILE, split)
    if not rounds and full is None:
        raise PcalError(f"{project.root}: nothing to report: no labelling rounds and no full-supervision "
                        f"metrics on '{split}' (run 'pcal seed' first)")
    total = project.point_count("train")
    notes: list[str] = []
    if not rounds:
        notes.append("no labelling rounds yet (run 'pcal seed')")
    if full is None:
        notes.append(f"no full-supervision reference on '{split}' (pcal train --full; pcal evaluate --full "
                     f"--split {split})")

    ledger = read_ledger(project)
    by_round: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for entry in ledger:
        by_round[entry.get("round")].append(entry)

    rows = []
    for index in rounds:
        folder = project.round_dir(index)
        labelled = sum(labelled_counts(project, index).values())
        added = _added(folder / LABELLING_FILE, by_round.get(index, []))
        void = _optional_json(folder / LABELLING_FILE, "labelling record").get("void_added")
        evaluation = _evaluation(folder / METRICS_FILE, split)
        settings = _optional_json(folder / ROUND_FILE, "round settings")
        rows.append(RoundRow(
            round=index,
            labelled_points=labelled,
            labelled_percent=100.0 * labelled / total if total else 0.0,
            points_added=added[0],
            units_added=added[1],
            unit=added[2],
            source=added[3],
            evaluation=evaluation,
            ratio_to_full=_ratio(evaluation, full),
            settings=settings,
            void_added=void if isinstance(void, int) else None,
        ))
    missing = [row.round for row in rows if row.miou is None]
    if missing:
        notes.append(f"round(s) {_ranges(missing)} not evaluated on '{split}' "
                     f"(pcal evaluate --round N --split {split})")

    methods = []
    for row in rows:
        name = row.settings.get("method")
        if isinstance(name, str) and name and name not in methods:
            methods.append(name)
    if len(methods) > 1:
        notes.append(f"the method changed between rounds: {', '.join(methods)}")
    seed = next((row.settings["seed"] for row in rows if isinstance(row.settings.get("seed"), int)), None)
    name = project.root.resolve().name
    budget, ledger_points = _budget(ledger, total)
    if rows and ledger and ledger_points != rows[-1].labelled_points:
        notes.append(f"the ledger records {ledger_points:,} labelled points but the label files of round "
                     f"{rows[-1].round} hold {rows[-1].labelled_points:,}")
    return RunReport(
        root=project.root,
        name=name,
        method=methods[0] if methods else name,
        methods=methods,
        seed=seed,
        split=split,
        dataset=config.dataset,
        classes=list(config.classes),
        training_points=total,
        rows=rows,
        full=full,
        budget=budget,
        ledger_points=ledger_points,
        notes=notes,
        seed_report=_optional_json(project.round_dir(0) / "seed.json", "seed report") if rounds else None,
    )


def group_runs(runs: list[RunReport]) -> dict[str, list[RunReport]]:
    """Runs grouped by method name (methods sorted by name, runs by seed then folder name)."""
    groups: dict[str, list[RunReport]] = defaultdict(list)
    for run in runs:
        groups[run.method].append(run)
    order = lambda r: (r.seed is None, r.seed if r.seed is not None else 0, r.name)  # noqa: E731
    return {method: sorted(groups[method], key=order) for method in sorted(groups)}


def curve(runs: list[RunReport]) -> list[CurvePoint]:
    """Mean, sample std, min and max of mIoU per round over the runs evaluated at that round."""
    per_round: dict[int, list[RoundRow]] = defaultdict(list)
    for run in runs:
        for row in run.evaluated:
            per_round[row.round].append(row)
    points = []
    for index in sorted(per_round):
        rows = per_round[index]
        miou = np.array([row.miou for row in rows], dtype=np.float64)
        added = [row.points_added for row in rows if row.points_added is not None]
        voids = [(row.void_added, row.points_added) for row in rows if row.void_added is not None and row.points_added]
        points.append(CurvePoint(
            round=index,
            labelled_percent=float(np.mean([row.labelled_percent for row in rows])),
            miou_mean=float(miou.mean()),
            miou_std=float(miou.std(ddof=1)) if len(miou) > 1 else 0.0,
            miou_min=float(miou.min()),
            miou_max=float(miou.max()),
            runs=len(rows),
            points_added=float(np.mean(added)) if added else None,
            void_share=float(sum(v for v, _ in voids) / sum(n for _, n in voids)) if voids else None,
        ))
    return points


def ahead_of_random(point: CurvePoint, random: CurvePoint | None) -> bool | None:
    """Whether a method's mean mIoU at a round beats random's by more than random's spread over
    seeds (its sample standard deviation); ``None`` when random has fewer than two runs there."""
    if random is None or random.runs < 2:
        return None
    return point.miou_mean - random.miou_mean > random.miou_std


def full_reference(runs: list[RunReport]) -> float | None:
    """Mean full-supervision mIoU over the runs that have one, or ``None``."""
    values = [run.full.miou for run in runs if run.full is not None and run.full.miou is not None]
    return float(np.mean(values)) if values else None


# -- queries ------------------------------------------------------------------------------------


@dataclass
class SceneQueries:
    """A training scene with the points queried in a round and those already labelled then."""

    scene: str
    round: int
    unit: str
    xyz: np.ndarray
    rgb: np.ndarray | None
    query_mask: np.ndarray
    labelled_mask: np.ndarray
    units: int


def queries_round(project: Project, round_index: int | None) -> int:
    """``round_index`` if it has ``queries.json``, else (when ``None``) the last round that has one."""
    if round_index is not None:
        if not (project.round_dir(round_index) / QUERIES_FILE).is_file():
            raise PcalError(f"{project.root}: round {round_index} has no {QUERIES_FILE} (nothing selected there)")
        return round_index
    found = [r for r in project.rounds() if (project.round_dir(r) / QUERIES_FILE).is_file()]
    if not found:
        raise PcalError(f"{project.root}: no round has {QUERIES_FILE} yet (run 'pcal select')")
    return found[-1]


def scene_queries(project: Project, scene: str, round_index: int | None = None) -> SceneQueries:
    """The points of ``scene`` queried in a round's ``queries.json``.

    A point is queried when its unit (of the kind and cell size recorded in ``queries.json``) was
    selected and its label was still unknown (-1) in that round, exactly the points the oracle
    reveals; ``labelled_mask`` marks the points asked before (known or void).
    """
    if scene not in project.scenes("train"):
        raise PcalError(f"{project.root}: '{scene}' is not a training scene (queries are only made there)")
    index = queries_round(project, round_index)
    record = read_json(project.round_dir(index) / QUERIES_FILE, "queries")
    unit = record.get("unit")
    if not isinstance(unit, str):
        raise PcalError(f"{project.round_dir(index) / QUERIES_FILE}: no 'unit'")
    cell = record.get("cell") or DEFAULT_CELL
    selected = [int(q["unit"]) for q in record.get("queries", []) if q.get("scene") == scene]
    data = read_ply(project.scene_path("train", scene))
    labels = load_labels(project, index, scene, len(data))
    if selected:
        mask = query_mask(unit_ids(data, unit, float(cell)), labels, np.asarray(selected, dtype=np.int64))
    else:
        mask = np.zeros(len(data), dtype=bool)
    return SceneQueries(scene=scene, round=index, unit=unit, xyz=data.xyz, rgb=data.rgb,
                        query_mask=mask, labelled_mask=labels != UNKNOWN, units=len(set(selected)))


# -- files --------------------------------------------------------------------------------------


def _optional_json(path: Path, what: str) -> dict[str, Any]:
    return read_json(path, what) if path.is_file() else {}


def _evaluation(path: Path, split: str) -> Evaluation | None:
    """The metrics on ``split`` from a ``metrics.json`` (``None`` if the file or split is absent)."""
    data = _optional_json(path, "metrics").get(split)
    if not isinstance(data, dict):
        return None
    iou = data.get("iou") if isinstance(data.get("iou"), dict) else {}
    return Evaluation(miou=_number(data.get("miou")), oa=_number(data.get("oa")),
                      iou={str(k): _number(v) for k, v in iou.items()})


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _ratio(evaluation: Evaluation | None, full: Evaluation | None) -> float | None:
    if evaluation is None or full is None or evaluation.miou is None or not full.miou:
        return None
    return evaluation.miou / full.miou


def _added(labelling: Path, entries: list[dict[str, Any]]) -> tuple[int | None, int | None, str | None, str | None]:
    """(points, units, unit kind, source) a round added: ``labelling.json``, else the ledger."""
    if labelling.is_file():
        record = read_json(labelling, "labelling record")
        scenes = record.get("scenes") if isinstance(record.get("scenes"), dict) else {}
        units = sum(int(s.get("units") or 0) for s in scenes.values() if isinstance(s, dict))
        points = record.get("points_added")
        if not isinstance(points, int):
            points = sum(int(s.get("points") or 0) for s in scenes.values() if isinstance(s, dict))
        return points, units, record.get("unit"), record.get("source")
    if entries:
        kinds = sorted({str(e.get("unit")) for e in entries})
        sources = sorted({str(e.get("source")) for e in entries})
        return (sum(int(e.get("points") or 0) for e in entries), sum(int(e.get("units") or 0) for e in entries),
                "+".join(kinds), "+".join(sources))
    return None, None, None, None


def _budget(ledger: list[dict[str, Any]], total: int) -> tuple[list[BudgetLine], int]:
    """Ledger totals per (unit kind, source), and the points of the whole ledger that a person or
    the oracle labelled (pseudo-labels are listed but never count as budget)."""
    sums: dict[tuple[str, str], list[Any]] = {}
    for entry in ledger:
        key = (str(entry.get("unit")), str(entry.get("source")))
        item = sums.setdefault(key, [set(), 0, 0])
        item[0].add(entry.get("round"))
        item[1] += int(entry.get("units") or 0)
        item[2] += int(entry.get("points") or 0)
    lines = [BudgetLine(unit=u, source=s, events=len(r), units=n, points=p,
                        percent=100.0 * p / total if total else 0.0)
             for (u, s), (r, n, p) in sorted(sums.items())]
    return lines, sum(line.points for line in lines if line.source != "pseudo")  # pseudo-labels cost nothing


def _ranges(values: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)
