"""ReDAL's diversity-aware selection: cluster the candidate regions, decay repeats per cluster.

Regions are clustered by their pooled decoder features (k-means, seeded). Walking them by
descending score, the j-th region met in a cluster has its score multiplied by ``decay**(j-1)``;
the regions are re-ranked by the decayed scores and taken, skip-and-continue, until the point
budget is spent (never overshot: the release overshot by the last region). With ``trim`` only the
best ``trim`` fraction of regions by score are clustered and can be chosen (ReDAL's outdoor
setting, 0.1).

The release paired the i-th best region's cluster with the i-th region in *unsorted* order, so
the decay hit the wrong regions; here the decay is a vectorised rank-within-cluster over the
sorted order (no Python loop), about 0.1 microseconds per region.

The number of clusters scales with the pool by default (``clusters="auto"``): one cluster per
:data:`REGIONS_PER_CLUSTER` candidate regions, the ratio of ReDAL's S3DIS setting (400 clusters
over about 22,000 regions). A fixed count at least as large as the number of regions makes every
region its own cluster, so the decay never acts; :func:`resolve_clusters` warns then. With
``overshoot`` the walk takes the region that crosses the budget and stops, as the release did
(the budget is then overshot by part of one region); the default never overshoots.
"""

from __future__ import annotations

import warnings

import numpy as np

from pcal_cli.errors import PcalError
from pcal_cli.selection.topk import check_costs, rank_descending, select_topk

DEFAULT_DECAY = 0.95
INDOOR_CLUSTERS = 400  # ReDAL's fixed counts (S3DIS, SemanticKITTI): ``clusters=400`` gives the paper's
OUTDOOR_CLUSTERS = 150
REGIONS_PER_CLUSTER = 55  # the paper's S3DIS ratio: 400 clusters over about 22,000 regions
#: Above this many rows k-means runs mini-batch (seconds on 100k+ regions instead of minutes).
MINIBATCH_ROWS = 20_000


def cluster_regions(features: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """Cluster id ``[U]`` of each row of ``features`` ``[U, D]``: k-means with ``clusters``
    centres (capped at the number of distinct rows), seeded; mini-batch k-means when large."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise PcalError(f"region features must be [U, D], got shape {features.shape}")
    if clusters < 1:
        raise PcalError(f"the number of clusters must be at least 1, got {clusters}")
    if len(features) == 0:
        return np.zeros(0, dtype=np.int64)
    rows = len(features) if len(features) > MINIBATCH_ROWS else len(np.unique(features, axis=0))
    k = min(int(clusters), rows)
    if k <= 1:
        return np.zeros(len(features), dtype=np.int64)
    from sklearn.cluster import KMeans, MiniBatchKMeans  # here: importing sklearn takes seconds

    if len(features) > MINIBATCH_ROWS:
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096)
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=1)
    return model.fit_predict(features).astype(np.int64)


def cluster_decay(scores: np.ndarray, clusters: np.ndarray, decay: float = DEFAULT_DECAY) -> np.ndarray:
    """Scores after the per-cluster decay: the j-th best row of each cluster (j = 1, 2, ...) is
    multiplied by ``decay**(j-1)``. Ties keep row order. Meant for non-negative scores."""
    scores = np.asarray(scores, dtype=np.float64)
    clusters = np.asarray(clusters, dtype=np.int64)
    if scores.shape != clusters.shape or scores.ndim != 1:
        raise PcalError(f"{scores.shape} scores for {clusters.shape} cluster ids")
    if not 0.0 < decay <= 1.0:
        raise PcalError(f"the decay must be in (0, 1], got {decay}")
    order = rank_descending(scores)
    in_cluster = clusters[order]
    by_cluster = np.argsort(in_cluster, kind="stable")  # rank order kept inside each cluster
    sorted_ids = in_cluster[by_cluster]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    lengths = np.diff(np.r_[starts, len(sorted_ids)])
    position = np.arange(len(sorted_ids)) - np.repeat(starts, lengths)
    repeat = np.empty(len(order), dtype=np.int64)
    repeat[by_cluster] = position
    decayed = scores.copy()
    decayed[order] = scores[order] * np.power(decay, repeat)
    return decayed


def resolve_clusters(clusters: int | str, regions: int) -> int:
    """The cluster count for ``regions`` candidates: ``"auto"`` -> one per
    :data:`REGIONS_PER_CLUSTER` regions (at least 1); a number is kept, with a warning when it is
    not smaller than the number of regions (the decay then never acts)."""
    if isinstance(clusters, str) and clusters.strip().lower() == "auto":
        return max(1, int(round(regions / REGIONS_PER_CLUSTER)))
    if isinstance(clusters, str) and clusters.strip().isdigit():
        clusters = int(clusters)
    if isinstance(clusters, bool) or not isinstance(clusters, (int, np.integer)) or clusters < 1:
        raise PcalError(f"clusters must be a positive number or 'auto', got {clusters!r}")
    if regions and clusters >= regions:
        warnings.warn(f"diversity selection: {clusters} clusters for {regions} candidate regions puts every region "
                      "in a cluster of its own, so the decay never acts (use -o clusters=auto: one cluster per "
                      f"{REGIONS_PER_CLUSTER} regions)", stacklevel=2)
    return int(clusters)


def overshoot_walk(rank: np.ndarray, costs: np.ndarray, budget: int) -> np.ndarray:
    """The rows of ``rank`` taken until the budget is reached, the crossing one included (the
    release's rule; units of cost 0 skipped)."""
    rank = np.asarray(rank, dtype=np.int64)
    rank = rank[costs[rank] > 0]
    if budget <= 0 or not len(rank):
        return np.zeros(0, dtype=np.int64)
    spent = np.cumsum(costs[rank])
    return rank[: int(np.searchsorted(spent, budget, side="left")) + 1]


def diversity_select(scores: np.ndarray, costs: np.ndarray, features: np.ndarray, budget: int, *,
                     clusters: int | str = "auto", decay: float = DEFAULT_DECAY, trim: float | None = None,
                     seed: int = 0, overshoot: bool = False) -> np.ndarray:
    """Rows to label, in selection order, spending at most ``budget`` points (with ``overshoot``:
    until the budget is reached, the last region crossing it); see the module docstring."""
    scores = np.asarray(scores, dtype=np.float64)
    costs = check_costs(costs, budget, len(scores))
    if len(features) != len(scores):
        raise PcalError(f"{len(features)} feature rows for {len(scores)} regions")
    candidates = np.flatnonzero(costs > 0)
    if trim is not None:
        if not 0.0 < trim <= 1.0:
            raise PcalError(f"trim must be a fraction in (0, 1], got {trim}")
        keep = max(1, int(np.ceil(trim * len(candidates))))
        candidates = candidates[rank_descending(scores[candidates])[:keep]]
    ids = cluster_regions(features[candidates], resolve_clusters(clusters, len(candidates)), seed)
    decayed = cluster_decay(scores[candidates], ids, decay)
    if overshoot:
        return candidates[overshoot_walk(rank_descending(decayed), costs[candidates], budget)]
    chosen = select_topk(decayed, costs[candidates], budget)
    return candidates[chosen]
