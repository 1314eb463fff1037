"""Benchmark the acquisition scorers and budgeted selectors on one million points (CPU, numpy).

A random softmax table ``[N, C]`` stands in for a model's predictions; the units are the 0.25 m
grid cells of a synthetic room of ``N`` points; a random 3 % of the points count as labelled.
Every row is the median wall time of ``--repeats`` runs.

    .venv/bin/python benchmarks/acquisition.py                  # 1M points, C = 13, D = 96
    .venv/bin/python benchmarks/acquisition.py --points 200000 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pcal_cli.acquisition import (
    confidence,
    entropy,
    margin,
    mc_dropout_entropy,
    pool_features,
    random_scores,
    segment_entropy,
    unit_scores,
)
from pcal_cli.data.synthetic import synthetic_room
from pcal_cli.geometry.regions import grid_cells
from pcal_cli.selection import kcenter_greedy, select_topk


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls of ``fn`` and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def random_probs(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    """Softmax of Gaussian logits (scale 3), float32 ``[n, c]``."""
    logits = rng.normal(scale=3.0, size=(n, c)).astype(np.float32)
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=13)
    parser.add_argument("--dim", type=int, default=96, help="feature width for pooling and k-center")
    parser.add_argument("--passes", type=int, default=10, help="MC-dropout passes")
    parser.add_argument("--cell", type=float, default=0.25, help="grid cell size (m)")
    parser.add_argument("--budget", type=float, default=0.01, help="fraction of the points to select")
    parser.add_argument("--candidates", type=int, default=20000, help="k-center max_candidates")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (numpy BLAS not set)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    n, rng = args.points, np.random.default_rng(args.seed)
    probs = random_probs(rng, n, args.classes)
    passes = np.stack([random_probs(rng, n, args.classes) for _ in range(args.passes)])
    room = synthetic_room(args.seed, n, "benchmark")
    cells = grid_cells(room.xyz, args.cell).astype(np.int64)
    available = rng.random(n) >= 0.03
    features = rng.normal(size=(n, args.dim)).astype(np.float32)
    budget = int(args.budget * n)
    point_ids = np.arange(n, dtype=np.int64)
    entropies = entropy(probs)
    pred = probs.argmax(axis=1)
    units, cell_scores, cell_costs = unit_scores(entropies, cells, available)
    cell_features = pool_features(features, cells, available)
    labelled = features[~available]

    rows: list[tuple[str, int, str, float]] = []  # name, items, what the items are, seconds

    def bench(name: str, items: int, what: str, fn: Callable[[], Any]) -> Any:
        seconds, result = median_time(fn, args.repeats)
        rows.append((name, items, what, seconds))
        return result

    bench("random", n, "points", lambda: random_scores(n, np.random.default_rng(0)))
    bench("confidence", n, "points", lambda: confidence(probs))
    bench("margin", n, "points", lambda: margin(probs))
    bench("entropy", n, "points", lambda: entropy(probs))
    bench(f"mc_dropout ({args.passes} passes)", n, "points", lambda: mc_dropout_entropy(passes))
    bench(f"segment_entropy ({len(units)} cells)", n, "points",
          lambda: segment_entropy(pred, cells, args.classes, available))
    bench("unit_scores mean (cells)", n, "points", lambda: unit_scores(entropies, cells, available))
    bench("unit_scores max (cells)", n, "points",
          lambda: unit_scores(entropies, cells, available, how="max"))
    bench("unit_scores mean (points)", n, "points",
          lambda: unit_scores(entropies, point_ids, available))
    bench(f"pool_features D={args.dim} (cells)", n, "points",
          lambda: pool_features(features, cells, available))
    point_costs = available.astype(np.int64)
    picked = bench(f"select_topk points, budget {budget}", n, "units",
                   lambda: select_topk(entropies, point_costs, budget))
    assert point_costs[picked].sum() <= budget
    picked = bench(f"select_topk cells, budget {budget}", len(units), "units",
                   lambda: select_topk(cell_scores, cell_costs, budget))
    assert cell_costs[picked].sum() <= budget
    picked = bench(f"kcenter points, {args.candidates} cand., budget {budget}", args.candidates,
                   "candidates", lambda: kcenter_greedy(features, point_costs, budget, None, 0,
                                                        args.candidates))
    k_points = len(picked)
    picked = bench(f"kcenter points + {min(len(labelled), args.candidates)} labelled centres",
                   args.candidates, "candidates",
                   lambda: kcenter_greedy(features, point_costs, budget, labelled, 0, args.candidates))
    picked = bench(f"kcenter cells, budget {budget}", len(units), "candidates",
                   lambda: kcenter_greedy(cell_features, cell_costs, budget, None, 0, args.candidates))
    k_cells = len(picked)

    print(f"N = {n} points, C = {args.classes}, {len(units)} cells of {args.cell} m with available "
          f"points, budget {budget} points; k-center picks: {k_points} points, {k_cells} cells; "
          f"median of {args.repeats}, torch threads {args.threads}")
    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  {'items':>9}  {'median s':>9}  {'items/s':>12}")
    for name, items, what, seconds in rows:
        print(f"{name:<{width}}  {items:>9}  {seconds:>9.4f}  {items / seconds:>12.3g}  {what}")


if __name__ == "__main__":
    main()
