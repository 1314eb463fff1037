"""``pcal select``: merge the scores of every scene, fill the point budget, write ``queries.json``."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np

from pcal_cli import __version__
from pcal_cli.atomic import write_json
from pcal_cli.errors import PcalError
from pcal_cli.project import Project
from pcal_cli.rounds import QUERIES_FILE, read_json
from pcal_cli.options import resolve_options
from pcal_cli.acquisition import get_scorer
from pcal_cli.selection import SelectionInputs, get_selector
from pcal_cli.steps.jopro_round import load_prototypes
from pcal_cli.selection.topk import select_top_per_group
from pcal_cli.selection.budget import Budget, parse_budget
from pcal_cli.steps.pool import training_points
from pcal_cli.steps.score import load_scores
from pcal_cli.layout import ROUND_FILE

#: A round's budget should buy at least this many median units, or the selector has little choice.
MIN_UNITS_PER_ROUND = 10


def _warn_small_budget(budget_points: int, costs: np.ndarray, unit: str) -> None:
    """Warn, with the numbers, when the budget buys fewer than :data:`MIN_UNITS_PER_ROUND` median units."""
    sizes = costs[costs > 0]
    if unit == "point" or not len(sizes):
        return
    median = float(np.median(sizes))
    if budget_points < MIN_UNITS_PER_ROUND * median:
        warnings.warn(f"the budget of {budget_points:,} points buys about {budget_points / median:.1f} {unit}s of the "
                      f"median size ({median:,.0f} points); with fewer than {MIN_UNITS_PER_ROUND} the selection has "
                      "little to choose from: raise the budget or use smaller units"
                      + (" (supervoxels: pcal prepare --seed-resolution, e.g. 0.5)" if unit == "region" else ""),
                      stacklevel=3)


def _provide(inputs: SelectionInputs, need: str, arrays: dict, names: list[str], project: Project,
             round_index: int, selector: str) -> None:
    """Fill what a selector needs into ``inputs`` (one clear line when it is missing)."""
    if need == "point":
        if inputs.unit != "point":
            raise PcalError(f"--selector {selector} selects points: score with --unit point")
    elif need == "prototypes":
        if not get_scorer(inputs.scorer).round_state:
            raise PcalError(f"--selector {selector} needs the prototypes of --scorer fms")
        inputs.prototypes = load_prototypes(project, round_index)
    elif need in ("features", "xyz", "labelled_features"):
        if not all(need in arrays[n] for n in names):
            raise PcalError(f"--selector {selector} needs unit features: score again with --features "
                            "(or --scorer coreset)")
        setattr(inputs, need, np.concatenate([arrays[n][need] for n in names]))
    else:
        raise PcalError(f"selector '{selector}' needs '{need}', which pcal cannot provide")


def select_round(project: Project, round_index: int, budget: str | Budget, *, selector: str = "topk", seed: int = 0,
                 method: str | None = None, train_options: dict[str, Any] | None = None,
                 options: dict[str, Any] | None = None, force: bool = False) -> dict[str, Any]:
    """Choose round ``round_index``'s queries; an existing ``queries.json`` is kept unless ``force``.

    ``options`` are the selector's options (``-o KEY=VALUE``; defaults by indoor/outdoor project).
    """
    path = project.round_dir(round_index) / QUERIES_FILE
    if path.is_file() and not force:
        return read_json(path, "queries")
    spec = get_selector(selector)
    selector = spec.name
    chosen_options = json.loads(json.dumps(resolve_options(spec.default_options(project.config.indoor),
                                                           options or {}, f"selector '{selector}'")))
    parsed = parse_budget(budget)
    budget = str(parsed)  # recorded in its canonical form ("3.0%" -> "3%")
    config, arrays = load_scores(project, round_index)
    names = project.scenes("train")
    scene_of = np.concatenate([np.full(len(arrays[n]["units"]), i, dtype=np.int64) for i, n in enumerate(names)])
    units = np.concatenate([arrays[n]["units"] for n in names]).astype(np.int64)
    scores = np.concatenate([arrays[n]["scores"] for n in names]).astype(np.float64)
    costs = np.concatenate([arrays[n]["costs"] for n in names]).astype(np.int64)
    pool = int(sum(int(arrays[n].get("pool", arrays[n]["costs"].sum())) for n in names))
    candidates = int(costs.sum())
    if pool == 0:
        raise PcalError(f"{project.root}: every training point is labelled already; nothing to select")
    if parsed.kind == "per_scene":
        if not spec.per_scene_budgets:
            raise PcalError(f"a per-scene budget works with --selector topk only, not {selector}")
        chosen = select_top_per_group(scores, scene_of, parsed.units_per_scene)
        budget_points = int(costs[chosen].sum())
    else:
        budget_points = parsed.points(training_points(project))
        if budget_points > pool:
            raise PcalError(f"budget of {budget_points:,} points exceeds the unlabelled pool of {pool:,} points")
        if budget_points > candidates:
            raise PcalError(f"budget of {budget_points:,} points exceeds the {candidates:,} candidate points kept "
                            f"when scoring (keep={config.get('keep')} units per scene); score again with a "
                            "larger --keep")
        needs = set(spec.needs) | ({"features"} if spec.needs_features else set())
        inputs = SelectionInputs(scores=scores, costs=costs, scene_of=scene_of, seed=seed, round_index=round_index,
                                 pools=[int(arrays[n].get("pool", arrays[n]["costs"].sum())) for n in names],
                                 unit=config["unit"], scorer=config["scorer"],
                                 candidates=[int(arrays[n].get("candidates", len(arrays[n]["units"]))) for n in names])
        for need in sorted(needs):
            _provide(inputs, need, arrays, names, project, round_index, selector)
        _warn_small_budget(budget_points, costs, config["unit"])
        if spec.choose is None:
            raise PcalError(f"selector '{selector}' has no choose() to call")
        chosen = np.asarray(spec.choose(inputs, budget_points, chosen_options), dtype=np.int64)
    if len(chosen) == 0:
        raise PcalError(f"budget of {budget_points:,} points is smaller than every available {config['unit']}")
    queries = [
        {"scene": names[int(scene_of[row])], "unit": int(units[row]), "points": int(costs[row]),
         "score": float(scores[row]), "rank": rank}
        for rank, row in enumerate(chosen, start=1)
    ]
    record = {
        "round": round_index,
        "unit": config["unit"],
        "cell": config["cell"],
        "scorer": config["scorer"],
        "selector": selector,
        "selector_options": chosen_options,
        "scorer_options": config.get("options", {}),
        "budget": budget,
        "budget_points": budget_points,
        "spent_points": int(costs[chosen].sum()),
        "overshoot_points": max(0, int(costs[chosen].sum()) - budget_points),
        "pool_points": pool,
        "queries": queries,
    }
    write_json(project.round_dir(round_index) / ROUND_FILE, {
        "method": method or config["scorer"], "scorer": config["scorer"], "selector": selector,
        "scorer_options": config.get("options", {}), "selector_options": chosen_options,
        "unit": config["unit"], "budget": budget, "seed": seed, "train": train_options or {},
        "pcal_version": __version__,
    })
    write_json(path, record)
    return record

