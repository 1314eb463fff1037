"""Benchmark ReDAL's pieces: geometric point properties and diversity-aware selection.

- point properties (colour discontinuity + surface variation, k = 50) on a synthetic room of
  ``--points`` points: seconds and seconds per million points;
- selection on 10k, 100k and 1M regions with 96-d features: k-means time, and the per-cluster
  decay + budgeted ranking time per region (the paper quotes 0.58 ms per region).

    .venv/bin/python benchmarks/redal.py                         # 1M points; 10k/100k/1M regions
    .venv/bin/python benchmarks/redal.py --points 200000 --regions 10000,100000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pcal_cli.data.synthetic import synthetic_room
from pcal_cli.geometry.point_properties import point_properties
from pcal_cli.selection.diversity import cluster_decay, cluster_regions
from pcal_cli.selection.topk import select_topk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--regions", default="10000,100000,1000000")
    parser.add_argument("--clusters", type=int, default=400)
    parser.add_argument("--dim", type=int, default=96)
    args = parser.parse_args()

    room = synthetic_room(0, args.points, "bench")
    start = time.perf_counter()
    point_properties(room.xyz, room.rgb, k=50)
    seconds = time.perf_counter() - start
    print(f"point properties, {len(room):,} points, k=50: {seconds:.2f} s "
          f"({seconds / len(room) * 1e6:.2f} s per million points)")

    rng = np.random.default_rng(1)
    print(f"{'regions':>10} {'k-means s':>10} {'decay+rank s':>13} {'ms/region':>10}")
    for count in (int(v) for v in args.regions.split(",")):
        features = rng.normal(size=(count, args.dim)).astype(np.float32)
        scores = rng.random(count)
        costs = rng.integers(50, 500, count)
        budget = int(costs.sum() * 0.02)
        start = time.perf_counter()
        clusters = cluster_regions(features, args.clusters, seed=0)
        kmeans = time.perf_counter() - start
        start = time.perf_counter()
        select_topk(cluster_decay(scores, clusters), costs, budget)
        ranking = time.perf_counter() - start
        print(f"{count:>10,} {kmeans:>10.2f} {ranking:>13.4f} {ranking / count * 1e3:>10.5f}")


if __name__ == "__main__":
    main()
