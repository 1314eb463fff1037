"""``pcal seed``: the initial labelled set, written as round 0."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pcal_cli.atomic import write_text
from pcal_cli.data.ply import ply_vertex_count, read_ply
from pcal_cli.errors import PcalError
from pcal_cli.project import Project
from pcal_cli.rounds import LabelCommit, LazyMapping, commit_labels, read_ledger, sync_ledger
from pcal_cli.selection import select_topk
from pcal_cli.selection.budget import parse_budget
from pcal_cli.selection.topk import select_top_per_group
from pcal_cli.steps.pool import pool_scene, reveal, training_points
from pcal_cli.units import DEFAULT_CELL, check_unit, unit_ids
from pcal_cli.catalogue import SEED_METHODS
from pcal_cli.layout import SEED_FILE

SCORE_BINS = 1 << 16  # histogram of the random scores of random points (see random_seed_points)
CHUNK = 1 << 22  # random scores drawn per call


def _scores(rng: np.random.Generator, n: int):
    """The next ``n`` random scores of ``rng``, in chunks: (offset, scores) pairs. The same values
    as one ``rng.random(n)`` call."""
    for start in range(0, n, CHUNK):
        yield start, rng.random(min(CHUNK, n - start))


def random_seed_units(project: Project, unit: str, budget_text: str, seed: int,
                      cell: float = DEFAULT_CELL, at_least_one: bool = False) -> dict[str, np.ndarray]:
    """Random units of the training split under the budget: scene -> selected unit ids. With
    ``at_least_one`` a budget smaller than every unit takes one random unit instead of failing
    (a method's default seed budget on a project smaller than it was meant for)."""
    if unit == "point":
        return random_seed_points(project, budget_text, seed)
    return random_seed_table(project, unit, budget_text, seed, cell, at_least_one=at_least_one)


def random_seed_points(project: Project, budget_text: str, seed: int) -> dict[str, np.ndarray]:
    """Random points, chosen as :func:`random_seed_table` chooses them (one random score per point
    of the split, in scene order; the highest scores, ties by point order) without a row per
    point: the point counts come from the PLY headers, a first pass over the scores counts them
    in :data:`SCORE_BINS` bins to find the bin of the last chosen score, a second pass (the same
    random stream again) keeps the points above that bin and ranks the few inside it. Memory is
    the budget plus one bin, not the split (a SemanticKITTI-sized split has billions of points)."""
    budget = parse_budget(budget_text)
    names = project.scenes("train")
    counts = [ply_vertex_count(project.scene_path("train", name)) for name in names]
    picked: dict[str, np.ndarray] = {}
    if budget.kind == "per_scene":
        rng = np.random.default_rng(seed)
        for name, n in zip(names, counts):
            scores = np.concatenate([chunk for _, chunk in _scores(rng, n)]) if n else np.zeros(0)
            top = np.argsort(-scores, kind="stable")[:budget.units_per_scene]
            if len(top):
                picked[name] = np.sort(top).astype(np.int64)
        return picked
    total = sum(counts)
    points = budget.points(training_points(project))
    if points > total:
        raise PcalError(f"budget of {points:,} points exceeds the {total:,} training points")
    if points <= 0:
        raise PcalError(f"budget of {points:,} points is smaller than the smallest point")
    histogram = np.zeros(SCORE_BINS, dtype=np.int64)
    rng = np.random.default_rng(seed)
    for n in counts:
        for _, chunk in _scores(rng, n):
            histogram += np.bincount((chunk * SCORE_BINS).astype(np.int64), minlength=SCORE_BINS)
    at_or_above = np.cumsum(histogram[::-1])[::-1]
    edge = int(np.flatnonzero(at_or_above >= points)[-1])  # the bin holding the last chosen score
    need = points - (int(at_or_above[edge + 1]) if edge + 1 < SCORE_BINS else 0)
    rng = np.random.default_rng(seed)
    sure: list[np.ndarray] = []
    edge_scene, edge_point, edge_score = [], [], []
    for index, n in enumerate(counts):
        taken = []
        for start, chunk in _scores(rng, n):
            bins = (chunk * SCORE_BINS).astype(np.int64)
            taken.append(start + np.flatnonzero(bins > edge))
            inside = np.flatnonzero(bins == edge)
            edge_scene.append(np.full(len(inside), index))
            edge_point.append(start + inside)
            edge_score.append(chunk[inside])
        sure.append(np.concatenate(taken) if taken else np.zeros(0, dtype=np.int64))
    scene_of, point_of = np.concatenate(edge_scene), np.concatenate(edge_point)
    best = np.argsort(-np.concatenate(edge_score), kind="stable")[:need]  # ties: split order
    for index, name in enumerate(names):
        chosen = np.concatenate([sure[index], point_of[best][scene_of[best] == index]])
        if len(chosen):
            picked[name] = np.sort(chosen).astype(np.int64)
    return picked


def random_seed_table(project: Project, unit: str, budget_text: str, seed: int,
                      cell: float = DEFAULT_CELL, at_least_one: bool = False) -> dict[str, np.ndarray]:
    """Random units from a table of every unit of the split: one random score per unit, in scene
    order; a global budget takes the highest scores that fit (ties by unit order)."""
    budget = parse_budget(budget_text)
    names = project.scenes("train")
    rng = np.random.default_rng(seed)
    table_scene, table_unit, table_cost = [], [], []
    for index, name in enumerate(names):
        ids = unit_ids(pool_scene(project, name), unit, cell)
        units, costs = np.unique(ids[ids >= 0], return_counts=True)
        table_scene.append(np.full(len(units), index))
        table_unit.append(units)
        table_cost.append(costs)
    scene_of = np.concatenate(table_scene)
    unit_of = np.concatenate(table_unit)
    cost = np.concatenate(table_cost)
    scores = rng.random(len(cost))
    if budget.kind == "per_scene":
        if unit == "scene":
            raise PcalError("a per-scene budget needs --unit region, cell or point")
        chosen = select_top_per_group(scores, scene_of, budget.units_per_scene)
    else:
        points = budget.points(training_points(project))
        if points > cost.sum():
            raise PcalError(f"budget of {points:,} points exceeds the {int(cost.sum()):,} training points")
        chosen = select_topk(scores, cost, points)
        if len(chosen) == 0 and at_least_one:
            chosen = np.argsort(-scores, kind="stable")[:1]  # the first unit in the random order
        if len(chosen) == 0:
            smallest = 100.0 * int(cost[cost > 0].min()) / max(int(cost.sum()), 1)
            raise PcalError(f"budget of {points:,} points is smaller than the smallest {unit} ({smallest:.2g}% of the "
                            f"training points): give a budget of at least that (--seed-budget in pcal round) or a "
                            "smaller unit")
    picked: dict[str, np.ndarray] = {}
    for index in np.unique(scene_of[chosen]):
        picked[names[index]] = np.sort(unit_of[chosen][scene_of[chosen] == index])
    return picked


def oracle_balanced_points(project: Project, unit: str, budget_text: str, seed: int,
                           cell: float = DEFAULT_CELL) -> dict[str, np.ndarray]:
    """JoPro's class-wise even seed, which READS THE GROUND TRUTH (an oracle, for reproducing the
    paper only): in every training scene and for every class c present, ``max(1, round(r * n_c))``
    random points of class c, where ``n_c`` is the class's point count and ``r`` the percentage
    budget. At least one point per present class makes the real fraction exceed ``r`` on small budgets.
    """
    if unit != "point":
        raise PcalError(f"the oracle-balanced seed labels points: --unit point, not {unit}")
    budget = parse_budget(budget_text)
    if budget.kind != "percent":
        raise PcalError(f"the oracle-balanced seed needs a percentage budget (such as 0.02%), not {budget}")
    fraction = float(budget.value) / 100
    rng = np.random.default_rng(seed)
    picked: dict[str, np.ndarray] = {}
    for name in project.scenes("train"):
        truth = read_ply(project.scene_path("train", name)).label
        order = rng.permutation(len(truth))  # the first points of each class in this order are chosen
        ranked = truth[order]
        chosen = [order[ranked == label][:max(1, round(fraction * int((truth == label).sum())))]
                  for label in np.unique(truth[truth >= 0])]
        if chosen:
            picked[name] = np.sort(np.concatenate(chosen))
    return picked


def seedal_units(project: Project, unit: str, budget_text: str, seed: int, cell: float = DEFAULT_CELL,
                 **options: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """SeedAL's diverse whole scenes and its report (``options``: those of
    :func:`pcal_cli.steps.seedal_seed.seedal_seed_scenes`, e.g. ``device``, ``features``)."""
    from pcal_cli.steps.seedal_seed import seedal_seed_scenes

    return seedal_seed_scenes(project, budget_text, seed, **options)


@dataclass(frozen=True)
class SeedSpec:
    """A way to pick round 0: ``pick(project, unit, budget, seed, cell, **options)`` returns the
    chosen unit ids per scene (or ``(chosen, report)``, the report written to ``seed.json``);
    ``unit`` is the unit it always labels (None: the caller's, default region); ``options`` are
    the keyword options it accepts (others are ignored)."""

    name: str
    pick: Callable[..., Any]
    unit: str | None = None
    options: tuple[str, ...] = ()
    description: str = ""


SEEDS: dict[str, SeedSpec] = {spec.name: spec for spec in (
    SeedSpec("random", random_seed_units, options=("at_least_one",), description="units drawn at random"),
    SeedSpec("seedal", seedal_units, unit="scene", options=("device", "features", "solver", "time_limit", "top_pairs",
                                                             "on_scene"),
             description="SeedAL: diverse whole scenes (a MILP over scene-pair diversity)"),
    SeedSpec("oracle-balanced", oracle_balanced_points, unit="point",
             description="JoPro's class-wise even points, from the ground truth (an oracle)"),
)}
assert tuple(SEEDS) == SEED_METHODS  # the names the CLI shows (pcal_cli.catalogue)


def seed_unit(method: str, unit: str | None) -> str | None:
    """The unit a seed method labels: its own (SeedAL: scene) or ``unit``."""
    spec = SEEDS.get(method)
    return unit if spec is None or spec.unit is None else spec.unit


def seed_round(project: Project, method: str = "random", unit: str | None = None, budget: str = "3%",
               seed: int = 0, cell: float = DEFAULT_CELL, force: bool = False,
               options: dict[str, Any] | None = None) -> LabelCommit:
    """Select the initial set with ``method`` (:data:`SEEDS`) and reveal it as round 0 (ledger
    source ``seed``).

    ``random`` draws units at random (``unit`` defaults to region); ``seedal`` picks diverse whole
    scenes (``options``: :func:`pcal_cli.steps.seedal_seed.seedal_seed_scenes`'s keywords; its
    report is written to ``rounds/r000/seed.json``); ``oracle-balanced`` is JoPro's class-wise even
    points, chosen from the ground truth (an oracle, never a real annotation workflow). ``options``
    a seed method does not take are ignored (e.g. ``device`` for ``random``).
    """
    if method not in SEEDS:
        raise PcalError(f"unknown seed method '{method}' (choose from {', '.join(SEEDS)})")
    spec = SEEDS[method]
    if spec.unit == "scene" and unit not in (None, "scene"):
        raise PcalError(f"{spec.description.split(':')[0]} chooses whole scenes: --unit scene, not {unit}")
    if spec.unit == "scene":
        unit = "scene"
    unit = unit or spec.unit or "region"
    check_unit(unit)
    if project.rounds():
        if not force:
            sync_ledger(project)  # a run killed between the round's rename and the ledger update
            return LabelCommit(0, 0, {}, skipped=True)
        if project.rounds() != [0] or (project.round_dir(0) / "model.pt").exists():
            raise PcalError(f"{project.root}: rounds after the seed exist; --force never deletes labels")
        shutil.rmtree(project.round_dir(0))
        _drop_ledger_round(project, 0)
    if not project.scenes("train"):
        raise PcalError(f"{project.root}: the project has no training scenes")
    taken = {k: v for k, v in (options or {}).items() if k in spec.options and v is not None}
    result = spec.pick(project, unit, budget, seed, cell, **taken)
    picked, report = result if isinstance(result, tuple) else (result, None)

    def revealed(name: str) -> np.ndarray:  # one scene read at a time, when commit_labels writes it
        return reveal(project, name, np.isin(unit_ids(pool_scene(project, name), unit, cell), picked[name]))

    units = {name: len(chosen) for name, chosen in picked.items()}
    details = {"method": method, "budget": budget, "seed": seed, "cell": cell}
    return commit_labels(project, 0, LazyMapping(picked, revealed), source="seed", unit=unit, units=units,
                         details=details,
                         extra_files={SEED_FILE: report} if report is not None else None)


def _drop_ledger_round(project: Project, round_index: int) -> None:
    kept = [e for e in read_ledger(project) if e.get("round") != round_index]
    write_text(project.ledger_path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in kept))
