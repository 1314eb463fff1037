"""SeedAL (Samet et al., ICCV 2023): a diverse initial labelled set of whole scenes under a point budget.

Pipeline (:func:`seedal_select`): per-scene descriptor sets (:mod:`.descriptors`) -> dataset-wide
z-score + unit rows -> per-scene k-means centroids with ``K = num_classes`` -> intra-scene
similarity ``mu_s`` and pair weights ``w_st = (1 - mu_s)(1 - mu_t)(1 - mu_st)`` (:mod:`.diversity`)
-> the heaviest pairs as candidates -> a MILP (or greedy) choice of scenes maximising the summed
weights of chosen pairs within the budget (:mod:`.solve`).

Where pcal differs from the released code: descriptors can come from the points themselves (the
paper uses DINO features of photographs; :func:`.descriptors.image_descriptors` reads such
features when a user has them); ``mu_st`` uses the full cross block when scenes have different
numbers of centroids; a one-centroid scene has ``mu_s = 1`` instead of crashing; k-means restarts
are pinned; candidate pairs exclude pairs that cannot fit the budget together; HiGHS under a time
limit with a greedy + local search fallback replaces SCIP with no limit; leftover budget is filled
with scenes that still fit.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pcal_cli.errors import PcalError
from pcal_cli.seedal.descriptors import (
    DESCRIPTOR_NAMES,
    image_descriptors,
    model_descriptors,
    normalise_descriptors,
    region_descriptors,
    zscore_descriptors,
)
from pcal_cli.seedal.diversity import N_INIT, pair_weights, scene_centroids, self_similarity
from pcal_cli.seedal.solve import (
    SOLVERS,
    SeedSolution,
    check_problem,
    default_top_pairs,
    greedy_local_search,
    select_seed_scenes,
    selection_objective,
)

__all__ = [
    "DESCRIPTOR_NAMES",
    "SOLVERS",
    "SeedSolution",
    "default_top_pairs",
    "greedy_local_search",
    "image_descriptors",
    "model_descriptors",
    "normalise_descriptors",
    "pair_weights",
    "region_descriptors",
    "scene_centroids",
    "seedal_select",
    "select_seed_scenes",
    "selection_objective",
    "self_similarity",
    "zscore_descriptors",
]


def seedal_select(
    scenes_descriptors: list[np.ndarray],
    points: np.ndarray,
    budget: int,
    num_classes: int,
    *,
    seed: int = 0,
    solver: str = "milp",
    top_pairs: int | None = None,
    time_limit: float = 30.0,
    normalise: bool = True,
) -> tuple[SeedSolution, dict[str, Any]]:
    """Choose the seed scenes: ``(solution, report)``.

    ``scenes_descriptors``: one ``[R_s, D]`` descriptor set per scene (same ``D``; raw, as from
    :func:`region_descriptors`, :func:`model_descriptors` or :func:`image_descriptors`).
    ``points`` ``[S]``: labelable points per scene. ``budget``: points. ``num_classes``: ``K`` of
    the per-scene k-means (the paper's choice). With ``normalise`` (default) the descriptors are
    z-scored over the dataset and scaled to unit rows first (:func:`normalise_descriptors`); pass
    False for features already comparable by cosine (e.g. DINO features, which the paper only
    L2-normalises through the centroids). ``top_pairs`` defaults to :func:`default_top_pairs`.

    ``report`` (JSON-ready): per chosen scene its index, points, number of centroids and ``mu_s``;
    the objective, status, gap, upper bound, solver, candidate pairs and scenes, points used, the
    budget, ``top_pairs``, the clustering settings and the seconds spent.
    """
    started = time.perf_counter()
    if not isinstance(scenes_descriptors, (list, tuple)) or len(scenes_descriptors) == 0:
        raise PcalError("SeedAL needs one descriptor array per scene")
    cost = np.asarray(points).reshape(-1)
    if len(cost) != len(scenes_descriptors):
        raise PcalError(f"{len(scenes_descriptors)} descriptor sets but {len(cost)} point counts")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise PcalError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    for index, desc in enumerate(scenes_descriptors):
        if np.asarray(desc).ndim != 2 or len(desc) == 0:
            raise PcalError(f"scene {index} has no descriptor rows (shape {np.asarray(desc).shape})")
    if solver not in SOLVERS:
        raise PcalError(f"unknown SeedAL solver '{solver}' (choose from {', '.join(SOLVERS)})")
    cost, _, _, budget = check_problem(cost, np.zeros((0, 2), dtype=np.int64), np.zeros(0), budget)
    if int(cost.min()) > budget:
        raise PcalError(f"no scene fits the budget of {budget:,} points (the smallest has {int(cost.min()):,})")
    limit = default_top_pairs(len(cost)) if top_pairs is None else top_pairs
    sets = normalise_descriptors(list(scenes_descriptors)) if normalise else list(scenes_descriptors)
    centroids = [scene_centroids(desc, int(num_classes), seed) for desc in sets]
    pairs, weights = pair_weights(centroids, top=limit, points=cost, budget=budget)
    solution = select_seed_scenes(cost, pairs, weights, budget, top_pairs=limit, solver=solver,
                                  time_limit=time_limit, seed=seed)
    chosen = [
        {"index": int(i), "points": int(cost[i]), "centroids": len(centroids[i]),
         "mu_s": self_similarity(centroids[i])}
        for i in solution.scenes
    ]
    report: dict[str, Any] = {
        "method": "seedal",
        "scenes": chosen,
        "num_scenes": len(chosen),
        "objective": solution.objective,
        "status": solution.status,
        "gap": solution.gap,
        "bound": solution.bound,
        "solver": solution.solver,
        "candidate_pairs": solution.candidate_pairs,
        "candidate_scenes": solution.candidate_scenes,
        "points_used": solution.points_used,
        "budget": int(budget),
        "top_pairs": int(limit),
        "num_clusters": int(num_classes),
        "kmeans_n_init": N_INIT,
        "seed": int(seed),
        "normalised": bool(normalise),
        "time_limit": float(time_limit),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return solution, report

