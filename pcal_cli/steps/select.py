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
from pcal_cli.selection import diversity_select, fds_select, get_selector, kcenter_greedy, select_topk
from pcal_cli.jopro.select import jopro_select
from pcal_cli.selection.topk import rank_descending
from pcal_cli.steps.jopro_round import load_prototypes
from pcal_cli.selection.topk import select_top_per_group
from pcal_cli.selection.budget import parse_budget, split_budget
from pcal_cli.steps.pool import training_points
from pcal_cli.steps.score import load_scores

ROUND_FILE = "round.json"
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
                      "little to choose from: raise the budget or use smaller units", stacklevel=3)


def select_round(project: Project, round_index: int, budget: str, *, selector: str = "topk", seed: int = 0,
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
        if selector != "topk":
            raise PcalError("a per-scene budget works with --selector topk only")
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
        if spec.needs_features and not all("features" in arrays[n] for n in names):
            raise PcalError(f"--selector {selector} needs unit features: score again with --features "
                            "(or --scorer coreset)")
        if selector == "fds" and config["unit"] != "point":
            raise PcalError("--selector fds selects points: score with --unit point")
        _warn_small_budget(budget_points, costs, config["unit"])
        if selector == "kcenter":
            features = np.concatenate([arrays[n]["features"] for n in names])
            labelled = np.concatenate([arrays[n]["labelled_features"] for n in names])
            chosen = kcenter_greedy(features, costs, budget_points, labelled if len(labelled) else None,
                                    np.random.default_rng([seed, round_index]))
        elif selector == "fds":
            if config["unit"] != "point":
                raise PcalError("--selector fds selects points: score with --unit point")
            xyz = np.concatenate([arrays[n]["xyz"] for n in names])
            features = np.concatenate([arrays[n]["features"] for n in names])
            chosen = fds_select(rank_descending(scores), scene_of, xyz, features, budget_points, **chosen_options)
        elif selector == "jopro":
            if config["scorer"] != "fms":
                raise PcalError("--selector jopro needs the prototypes of --scorer fms")
            xyz = np.concatenate([arrays[n]["xyz"] for n in names])
            features = np.concatenate([arrays[n]["features"] for n in names])
            anchors = load_prototypes(project, round_index)
            jopro_options = {k: v for k, v in chosen_options.items() if k != "budget_split"}
            shares = None
            if chosen_options.get("budget_split", "per-scene") == "per-scene":  # the release: per room
                pools = [int(arrays[n].get("pool", arrays[n]["costs"].sum())) for n in names]
                shares = dict(enumerate(split_budget(budget_points, pools)))
            chosen = jopro_select(-scores, scene_of, xyz, features, anchors["protos"], anchors["present"],
                                  budget_points, candidate_fraction=1.0, scene_budgets=shares, **jopro_options)
            chosen = chosen[costs[chosen] > 0]
        elif selector == "diversity":
            features = np.concatenate([arrays[n]["features"] for n in names])
            chosen = diversity_select(scores, costs, features, budget_points, seed=seed, **chosen_options)
        else:
            chosen = select_topk(scores, costs, budget_points)
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

