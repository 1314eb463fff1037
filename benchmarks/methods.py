"""Benchmark the components of the HPAL, JoPro and SeedAL methods (CPU, one thread by default).

- HPAL: HMMU scoring (points/s) of a synthetic room of ``--points`` points (about 8 x 6.7 x 3 m)
  with a random softmax table over ``--classes`` classes; FDS selection of ``--budget`` rows out of
  ``--points`` candidates with ``--dim``-d features, in three cases:

  * ``typical``: 4 rooms of ``points / 4`` candidates each, random Gaussian features (cosines near
    0, so little is suppressed) and a random ranking: the walk stops soon after the budget;
  * ``worst``: one scene, every candidate inside one ``--dense-box`` metre cube, all features
    within a small angle of one direction (every cosine above ``tau``): nearly every candidate is
    suppressed, the budget is never reached and the whole ranking is walked;
  * ``dense dissimilar``: the same cube with random features: nothing is suppressed, but every
    near pair among the accepted rows needs its cosine.

- JoPro: FMS scoring (points/s) of ``--fms-points`` features with ``draws x classes`` mixtures
  per point (65 by default) through a flow of 8 blocks of width 128 whose parameters are
  perturbed from the initial ones (a freshly built flow has zero last layers), and flow fitting
  on ``--points`` features (``fit_flow`` subsamples ``--flow-samples`` of them).

- SeedAL: descriptor time per million points (:func:`region_descriptors` on the synthetic room
  with 0.5 m grid cells as regions, with and without the normal estimation it includes), and the
  scene solver (MILP with HiGHS under ``--time-limit`` seconds, and the greedy + local search) for
  pools of ``--scenes`` scenes (the candidates are the ends of the heaviest pairs): point counts drawn log-uniformly between 20k and 1M, pair weights
  from per-scene k-means centroids of random descriptor sets drawn around 8 shared "styles"
  (``K = 13``), budget 3 % of the points,
  the default ``50 S`` candidate pairs. Objective, status and relative gap are reported.

Every row is the median wall time and the median CPU time of this process (steadier on a machine
shared with other jobs) over ``--repeats`` runs (one by default: the slow rows run once).

    .venv/bin/python benchmarks/methods.py                          # everything at 1M points
    .venv/bin/python benchmarks/methods.py --only hpal --json hpal.json
    .venv/bin/python benchmarks/methods.py --only fds --repeats 3
    .venv/bin/python benchmarks/methods.py --only fms,flow --fms-points 100000
    .venv/bin/python benchmarks/methods.py --only seedal --scenes 50,200 --time-limit 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from pcal_cli.acquisition.hmmu import hmmu_scores
from pcal_cli.data.synthetic import synthetic_room
from pcal_cli.geometry.neighbours import estimate_normals
from pcal_cli.geometry.regions import grid_cells
from pcal_cli.jopro import FeatureFlow, fit_flow, fms_scores, l2_normalise
from pcal_cli.seedal import pair_weights, region_descriptors, scene_centroids, select_seed_scenes
from pcal_cli.seedal.solve import default_top_pairs
from pcal_cli.selection.fds import fds_select

#: The components, by method; ``--only`` takes method names, component names or both.
PARTS = {"hpal": ("hmmu", "fds"), "jopro": ("fms", "flow"), "seedal": ("descriptors", "solver")}


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Median wall time and median CPU time of this process over ``repeats`` calls of ``fn``, and
    the last result. On a machine shared with other jobs the CPU time is the steadier figure."""
    wall, cpu, result = [], [], None
    for _ in range(max(1, repeats)):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), result


def random_probs(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    """Softmax of Gaussian logits (scale 3), float32 ``[n, c]``."""
    logits = rng.normal(scale=3.0, size=(n, c)).astype(np.float32)
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def fds_typical(n: int, dim: int, seed: int) -> dict[str, np.ndarray]:
    """4 synthetic rooms of ``n / 4`` points, random features, random ranking."""
    rng = np.random.default_rng(seed)
    sizes = [n // 4 + (i < n % 4) for i in range(4)]
    xyz = np.concatenate([synthetic_room(seed + i, size, f"room{i}").xyz for i, size in enumerate(sizes)])
    scene = np.repeat(np.arange(4), sizes)
    features = rng.normal(size=(n, dim)).astype(np.float32)
    return {"order": rng.permutation(n), "scene_of": scene, "xyz": xyz, "features": features}


def fds_dense(n: int, dim: int, seed: int, box: float, similar: bool = True) -> dict[str, np.ndarray]:
    """One scene, all points in a ``box`` metre cube; features nearly parallel (``similar``, every
    cosine about 0.98) or random Gaussian."""
    rng = np.random.default_rng(seed)
    xyz = (rng.random((n, 3)) * box).astype(np.float32)
    if similar:
        direction = rng.normal(size=dim)
        direction /= np.linalg.norm(direction)
        features = (direction + rng.normal(scale=0.02, size=(n, dim))).astype(np.float32)
    else:
        features = rng.normal(size=(n, dim)).astype(np.float32)
    return {"order": rng.permutation(n), "scene_of": np.zeros(n, dtype=np.int64), "xyz": xyz, "features": features}


def perturbed_flow(dim: int, classes: int, seed: int) -> FeatureFlow:
    """A flow of the JoPro default size with every parameter moved off its initial value."""
    flow = FeatureFlow(dim, classes, blocks=8, hidden=128, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    return flow


def seedal_problem(num_scenes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(points, pairs, weights, budget)`` of a synthetic SeedAL problem (see the module docstring)."""
    rng = np.random.default_rng(seed)
    points = np.exp(rng.uniform(np.log(20_000), np.log(1_000_000), num_scenes)).astype(np.int64)
    budget = int(0.03 * points.sum())
    styles = rng.normal(size=(8, 19))  # scenes share a few "styles", as rooms of one building do
    centroids = []
    for _ in range(num_scenes):
        rows = int(rng.integers(40, 200))
        spread = rng.uniform(0.3, 2.0)
        desc = styles[rng.integers(len(styles))] + spread * rng.normal(size=(rows, 19))
        desc /= np.linalg.norm(desc, axis=1, keepdims=True)
        centroids.append(scene_centroids(desc, 13, seed))
    limit = default_top_pairs(num_scenes)
    pairs, weights = pair_weights(centroids, top=limit, points=points, budget=budget)
    return points, pairs, weights, budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000, help="points (HMMU, FDS candidates, flow fit)")
    parser.add_argument("--fms-points", type=int, default=None, help="points scored by FMS (default: --points)")
    parser.add_argument("--classes", type=int, default=13)
    parser.add_argument("--dim", type=int, default=96, help="decoder feature width")
    parser.add_argument("--budget", type=int, default=20_000, help="FDS budget (rows)")
    parser.add_argument("--radius", type=float, default=0.20, help="FDS radius (m)")
    parser.add_argument("--tau", type=float, default=0.8, help="FDS cosine threshold")
    parser.add_argument("--dense-box", type=float, default=2.0, help="edge (m) of the FDS worst-case cube")
    parser.add_argument("--draws", type=int, default=5, help="FMS draws per class")
    parser.add_argument("--flow-steps", type=int, default=200)
    parser.add_argument("--flow-samples", type=int, default=200_000)
    parser.add_argument("--scenes", default="50,200,1000", help="SeedAL candidate scene counts")
    parser.add_argument("--time-limit", type=float, default=30.0, help="SeedAL MILP time limit (s)")
    components = [c for group in PARTS.values() for c in group]
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated methods ({', '.join(PARTS)}) or components ({', '.join(components)})")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument("--json", default=None, help="also write the rows and settings to this JSON file")
    args = parser.parse_args()
    asked = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(asked) - set(PARTS) - set(components))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join([*PARTS, *components])}")
    parts = {c for p in asked for c in PARTS.get(p, (p,))}
    torch.set_num_threads(args.threads)
    n = args.points
    rows: list[dict[str, Any]] = []

    def bench(method: str, step: str, items: int, unit: str, fn: Callable[[], Any],
              extra: Callable[[Any], dict[str, Any]] | None = None) -> Any:
        seconds, cpu, result = median_time(fn, args.repeats)
        row = {"method": method, "step": step, "items": items, "unit": unit, "seconds": seconds,
               "cpu_seconds": cpu, "per_cpu_second": items / cpu if cpu > 0 else float("inf")}
        row.update(extra(result) if extra else {})
        rows.append(row)
        print(f"  {method:<7} {step:<50} {seconds:>9.3f} s wall {cpu:>9.3f} s cpu", flush=True)
        return result

    with threadpool_limits(limits=args.threads):
        if "hmmu" in parts:
            rng = np.random.default_rng(args.seed)
            xyz = synthetic_room(args.seed, n, "hmmu").xyz
            probs = random_probs(rng, n, args.classes)
            bench("hpal", f"hmmu scores, C={args.classes}", n, "points", lambda: hmmu_scores(xyz, probs))
            del xyz, probs
        if "fds" in parts:
            for case, make in (("typical", lambda: fds_typical(n, args.dim, args.seed)),
                               ("worst", lambda: fds_dense(n, args.dim, args.seed, args.dense_box)),
                               ("dense dissimilar", lambda: fds_dense(n, args.dim, args.seed, args.dense_box, False))):
                data = make()
                bench("hpal", f"fds {case}, budget {args.budget}, D={args.dim}", n, "candidates",
                      lambda d=data: fds_select(d["order"], d["scene_of"], d["xyz"], d["features"], args.budget,
                                                args.radius, args.tau),
                      lambda picked: {"selected": len(picked)})
                del data

        if "fms" in parts:
            rng = np.random.default_rng(args.seed)
            m = args.fms_points or n
            flow = perturbed_flow(args.dim, args.classes, args.seed)
            features = l2_normalise(rng.normal(size=(m, args.dim)).astype(np.float32))
            protos = l2_normalise(rng.normal(size=(args.classes, args.dim)).astype(np.float32))
            present = np.ones(args.classes, dtype=bool)
            scene = np.repeat(np.arange(4), m // 4 + 1)[:m]
            mixtures = args.draws * args.classes
            bench("jopro", f"fms scores, {mixtures} mixtures/point", m, "points",
                  lambda: fms_scores(flow, features, protos, present, scene, draws=args.draws, seed=args.seed))
            del features
        if "flow" in parts:
            rng = np.random.default_rng(args.seed + 1)
            features = l2_normalise(rng.normal(size=(n, args.dim)).astype(np.float32))
            pseudo = np.where(rng.random(n) < 0.5, rng.integers(0, args.classes, n), -1)
            fresh = FeatureFlow(args.dim, args.classes, blocks=8, hidden=128, seed=args.seed)
            bench("jopro", f"flow fit, {args.flow_steps} steps, {args.flow_samples} samples", n, "features",
                  lambda: fit_flow(fresh, features, pseudo, steps=args.flow_steps, max_samples=args.flow_samples,
                                   seed=args.seed),
                  lambda info: {"loss_first": info["loss_first"], "loss_last": info["loss_last"]})
            del features, pseudo

        if "descriptors" in parts:
            room = synthetic_room(args.seed, n, "seedal")
            room.region = grid_cells(room.xyz, 0.5).astype(np.int32)
            normals = bench("seedal", "normals (k=16)", n, "points", lambda: estimate_normals(room.xyz, k=16))
            bench("seedal", "region descriptors, normals given", n, "points",
                  lambda: region_descriptors(room, normals), lambda d: {"regions": len(d)})
            bench("seedal", "region descriptors (with normals)", n, "points",
                  lambda: region_descriptors(room), lambda d: {"regions": len(d)})
            del room, normals
        if "solver" in parts:
            for count in (int(v) for v in args.scenes.split(",")):
                points, pairs, weights, budget = seedal_problem(count, args.seed)
                for solver in ("milp", "greedy"):
                    bench("seedal", f"solve {solver}, {count} scenes", count, "scenes",
                          lambda s=solver: select_seed_scenes(points, pairs, weights, budget, solver=s,
                                                              time_limit=args.time_limit),
                          lambda sol: {"objective": sol.objective, "status": sol.status, "gap": sol.gap,
                                       "chosen": len(sol.scenes), "candidate_scenes": sol.candidate_scenes})

    print(f"\nthreads {args.threads}, median of {args.repeats}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'method':<7} {'step':<50} {'items':>9} {'wall s':>9} {'cpu s':>9} {'items/cpu s':>11}  notes")
    plain = ("method", "step", "items", "unit", "seconds", "cpu_seconds", "per_cpu_second")
    for row in rows:
        notes = {k: v for k, v in row.items() if k not in plain}
        text = ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in notes.items())
        print(f"{row['method']:<7} {row['step']:<50} {row['items']:>9} {row['seconds']:>9.3f} {row['cpu_seconds']:>9.3f} "
              f"{row['per_cpu_second']:>11.4g}  {row['unit']}{'; ' + text if text else ''}")
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"settings": settings, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
