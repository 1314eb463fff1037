"""JoPro's selection: per-scene candidates, spatial and prototype suppression, then the budget.

Scores are FMS scores (:func:`~pcal_cli.jopro.fms.fms_scores`): **lowest first**. Ties go to the
lower row; NaN scores rank last. Steps:

1. **Candidates**: in each scene, the lowest ``ceil(candidate_fraction * n)`` of its ``n``
   selectable points (at least one).
2. **Spatial suppression** (``radius`` in metres, Euclidean distance, strictly closer than
   ``radius``; KD-tree per scene). ``spatial_rule="greedy"`` (default) walks the candidates from the
   lowest score and drops every later candidate closer than ``radius`` to one already kept, so
   kept candidates are pairwise at least ``radius`` apart and a dropped candidate drops nothing.
   ``"local-min"`` is the release's rule: of every close pair the higher-scored is dropped, even
   if the lower one is itself dropped, so a chain of close candidates keeps only its lowest. The
   release compared *squared* distances with 0.2 (Euclidean 0.447 m): pcal's default radius 0.45
   reproduces that reach with a true distance.
3. **Prototype suppression**: each surviving candidate is assigned to its most similar present
   prototype (cosine); among the candidates of a scene whose cosine to their prototype is above
   ``tau``, only the lowest-scored per prototype is kept. Candidates at or below ``tau`` all stay.
4. **Budget**: with ``scene_budgets`` (the release's rule; :func:`pcal_cli.selection.budget.split_budget`
   gives each scene its share of the round's budget, in proportion to its pool) each scene takes
   its survivors in ascending score up to its share, then its other selectable points (suppressed
   candidates and non-candidates alike) in ascending score, as the release did with its
   ``s + 1000`` key; what a scene cannot fill goes to the best remaining points of any scene.
   Without it the survivors of all scenes compete in one ranking up to ``budget``, then the rest
   fills in. Fewer than ``budget`` rows come back only when fewer points are selectable.

Returns row indices in selection order. Vectorised except for a loop over scenes and the greedy
walk over the (few) candidates.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from pcal_cli.errors import PcalError

SPATIAL_RULES = ("greedy", "local-min")


def spatial_keep(xyz: np.ndarray, radius: float, rule: str = "greedy") -> np.ndarray:
    """Boolean mask over points ``xyz`` ``[M, 3]`` already sorted best first (see the module docstring)."""
    m = len(xyz)
    keep = np.ones(m, dtype=bool)
    if m < 2 or radius <= 0:
        return keep
    pairs = cKDTree(xyz).query_pairs(radius, output_type="ndarray")
    if len(pairs):
        pairs = np.sort(pairs, axis=1)  # (better, worse): rows are in rank order
        dist = np.linalg.norm(xyz[pairs[:, 0]] - xyz[pairs[:, 1]], axis=1)
        pairs = pairs[dist < radius]  # query_pairs includes distance == radius
    if len(pairs) == 0:
        return keep
    if rule == "local-min":
        keep[pairs[:, 1]] = False
        return keep
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    starts = np.searchsorted(pairs[:, 0], np.arange(m + 1))
    worse = pairs[:, 1]
    for i in np.unique(pairs[:, 0]).tolist():
        if keep[i]:
            keep[worse[starts[i]:starts[i + 1]]] = False
    return keep


def prototype_keep(features: np.ndarray, protos: np.ndarray, tau: float) -> np.ndarray:
    """Boolean mask over ``features`` sorted best first: one per prototype among cosine > ``tau``."""
    keep = np.ones(len(features), dtype=bool)
    if len(features) == 0 or len(protos) == 0:
        return keep
    f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    p = protos / np.maximum(np.linalg.norm(protos, axis=1, keepdims=True), 1e-12)
    cos = f @ p.T
    best = cos.argmax(axis=1)
    strong = np.flatnonzero(cos[np.arange(len(f)), best] > tau)
    _, first = np.unique(best[strong], return_index=True)
    keep[strong] = False
    keep[strong[first]] = True
    return keep


def jopro_select(scores: np.ndarray, scene_of: np.ndarray, xyz: np.ndarray, features: np.ndarray,
                 protos: np.ndarray, present: np.ndarray, budget: int, candidate_fraction: float = 0.02,
                 radius: float = 0.45, tau: float = 0.8, *, selectable: np.ndarray | None = None,
                 spatial_rule: str = "greedy", scene_budgets: dict[int, int] | None = None,
                 scene_candidates: np.ndarray | None = None) -> np.ndarray:
    """Rows to label, in selection order (see the module docstring); at most ``budget`` of them.

    ``scores`` ``[N]`` (low first), ``scene_of`` ``[N]`` scene ids, ``xyz`` ``[N, 3]`` metres,
    ``features`` ``[N, D]``, ``protos`` ``[C, D]`` with ``present`` ``[C]``; ``selectable`` ``[N]``
    bool (default all) marks rows that may be chosen (e.g. not yet labelled); ``scene_budgets``
    maps a scene id of ``scene_of`` to its share of ``budget`` (they must sum to ``budget``);
    ``scene_candidates`` (indexed by scene id) caps each scene's candidates at that many of its
    best rows (the rows were cut to the candidates and the points that fill the budget after them).
    """
    scores = np.asarray(scores)
    n = len(scores)
    scene_of, xyz, features = np.asarray(scene_of), np.asarray(xyz), np.asarray(features)
    protos, present = np.asarray(protos), np.asarray(present)
    if scores.ndim != 1 or scene_of.shape != (n,):
        raise PcalError(f"jopro_select: scores and scene ids must be [N], got {scores.shape} and {scene_of.shape}")
    if xyz.shape != (n, 3):
        raise PcalError(f"jopro_select: xyz must be [{n}, 3], got {xyz.shape}")
    if features.ndim != 2 or len(features) != n:
        raise PcalError(f"jopro_select: features must be [{n}, D], got {features.shape}")
    if protos.ndim != 2 or protos.shape[1] != features.shape[1] or present.shape != (len(protos),):
        raise PcalError(f"jopro_select: prototypes must be [C, {features.shape[1]}] with present [C], "
                        f"got {protos.shape} and {present.shape}")
    if present.dtype != np.bool_:
        raise PcalError("jopro_select: present must be a boolean array")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
        raise PcalError(f"jopro_select: the budget must be a non-negative number of points, got {budget!r}")
    if not 0 < candidate_fraction <= 1:
        raise PcalError(f"jopro_select: candidate_fraction must be in (0, 1], got {candidate_fraction}")
    if not radius >= 0:
        raise PcalError(f"jopro_select: radius must be >= 0 metres, got {radius}")
    if not -1 <= tau <= 1:
        raise PcalError(f"jopro_select: tau is a cosine, it must be in [-1, 1], got {tau}")
    if spatial_rule not in SPATIAL_RULES:
        raise PcalError(f"jopro_select: unknown spatial rule {spatial_rule!r}; "
                        f"choose one of: {', '.join(SPATIAL_RULES)}")
    if selectable is None:
        rows = np.arange(n)
    else:
        selectable = np.asarray(selectable)
        if selectable.shape != (n,) or selectable.dtype != np.bool_:
            raise PcalError(f"jopro_select: selectable must be a boolean [{n}] array")
        rows = np.flatnonzero(selectable)
    if budget == 0 or len(rows) == 0:
        return np.zeros(0, dtype=np.int64)

    key = scores.astype(np.float64)
    key[np.isnan(key)] = np.inf
    scene_codes = np.unique(scene_of[rows], return_inverse=True)[1].reshape(len(rows))
    order = np.lexsort((rows, key[rows], scene_codes))  # by scene, score, row
    ranked, ranked_scene = rows[order], scene_codes[order]
    sizes = np.bincount(ranked_scene)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    take = np.minimum(sizes, np.maximum(1, np.ceil(np.round(candidate_fraction * sizes, 9)))).astype(np.int64)
    if scene_candidates is not None:
        ids = np.unique(scene_of[rows])
        if ids.max() >= len(scene_candidates):
            raise PcalError(f"jopro_select: scene_candidates has {len(scene_candidates)} scenes, scene ids reach {ids.max()}")
        take = np.minimum(take, np.maximum(1, np.asarray(scene_candidates, dtype=np.int64)[ids]))
    anchors = protos[present].astype(np.float64)
    survivors = []
    for start, count in zip(starts.tolist(), take.tolist()):
        cand = ranked[start:start + count]  # best first
        cand = cand[spatial_keep(xyz[cand].astype(np.float64), float(radius), spatial_rule)]
        cand = cand[prototype_keep(features[cand].astype(np.float64), anchors, tau)]
        survivors.append(cand)
    chosen = np.concatenate(survivors)
    if scene_budgets is not None:
        chosen = _per_scene(chosen, rows, scene_of, key, scene_budgets, budget)
    else:
        chosen = chosen[np.lexsort((chosen, key[chosen]))][:budget]
    if len(chosen) < budget:
        rest = np.setdiff1d(rows, chosen, assume_unique=True)
        rest = rest[np.lexsort((rest, key[rest]))][:budget - len(chosen)]
        chosen = np.concatenate([chosen, rest])
    return chosen.astype(np.int64)


def _per_scene(survivors: np.ndarray, rows: np.ndarray, scene_of: np.ndarray, key: np.ndarray,
               scene_budgets: dict[int, int], budget: int) -> np.ndarray:
    """Each scene's share: its survivors by score, then its other rows by score (step 4)."""
    if sum(scene_budgets.values()) != budget:
        raise PcalError(f"jopro_select: the scene budgets sum to {sum(scene_budgets.values())}, not {budget}")
    taken = []
    survivors = survivors[np.lexsort((survivors, key[survivors]))]
    for scene, share in sorted(scene_budgets.items()):
        if share <= 0:
            continue
        mine = survivors[scene_of[survivors] == scene][:share]
        if len(mine) < share:
            others = np.setdiff1d(rows[scene_of[rows] == scene], mine, assume_unique=True)
            others = others[np.lexsort((others, key[others]))][:share - len(mine)]
            mine = np.concatenate([mine, others])
        taken.append(mine)
    chosen = np.concatenate(taken) if taken else np.zeros(0, dtype=np.int64)
    return chosen[np.lexsort((chosen, key[chosen]))]
