"""Tiled inference against one pass: network memory, CPU time and how much the margin matters.

    .venv/bin/python benchmarks/tiling.py                     # both parts, defaults below
    .venv/bin/python benchmarks/tiling.py --skip-margins --rooms 8 --cr 1.0 --max-voxels 250000

The scene is a floor of ``--rooms`` synthetic rooms of ``--room-points`` points side by side
(as in ``benchmarks/scale.py``), voxelised at 5 cm.

Part 1, memory: one forward pass of a MinkUNet of width ``--cr`` (random weights, eval mode) over
the whole scene, once in one pass and once in tiles of ``--max-voxels`` with the default margin,
each in its own process; prints the peak resident memory before and after the pass (the outputs,
logits and last decoder features of every voxel, are included) and the CPU seconds of the pass
(CPU time, not wall time: the figures stay comparable on a loaded machine).

Part 2, margins: a ``--cr 0.125`` MinkUNet trained ``--steps`` steps on a small synthetic project,
then the scene in one pass and in tiles of ``--margin-tile`` voxels with margins 0, 8, 16, 32 and
64: the share of voxels whose logits are the one-pass logits (within 1e-4) and the share of points
whose predicted class is the one-pass class.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PITCH = (10.0, 8.0)


def floor_scene(rooms: int, room_points: int, seed: int = 1):
    from pcal_cli.data.scene import Scene
    from pcal_cli.data.synthetic import synthetic_room

    columns = int(np.ceil(np.sqrt(rooms)))
    parts = []
    for index in range(rooms):
        room = synthetic_room(seed, room_points, f"t{index}")
        room.xyz[:, 0] += PITCH[0] * (index % columns)
        room.xyz[:, 1] += PITCH[1] * (index // columns)
        parts.append(room)
    return Scene("floor", np.concatenate([p.xyz for p in parts]), label=np.concatenate([p.label for p in parts]),
                 rgb=np.concatenate([p.rgb for p in parts]))


def forward_memory(rooms: int, room_points: int, cr: float, max_voxels: int, threads: int) -> dict:
    """One forward pass over the floor (in this process): peak RSS before and after, CPU seconds."""
    import torch

    from pcal_cli.models import build_model
    from pcal_cli.training.inference import Tiling, run_tiled, scene_voxels, voxel_tiles

    torch.set_num_threads(threads)
    scene = floor_scene(rooms, room_points)
    voxels = scene_voxels(scene, ["rgb"], 0.05)
    del scene
    model = build_model("minkunet", 6, 13, cr=cr, seed=0).eval()
    tiling = Tiling(max_voxels=max_voxels)
    tiles = voxel_tiles(voxels.coords, tiling.max_voxels, tiling.margin)
    before = resource.getrusage(resource.RUSAGE_SELF)
    with torch.no_grad():
        outputs = run_tiled(voxels, torch.device("cpu"), lambda x: tuple(a.float().numpy() for a in model(x)), tiling)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"voxels": len(voxels.coords), "tiles": len(tiles), "context": int(sum(len(c) for _, c in tiles)),
            "cr": cr, "max_voxels": max_voxels, "rss_before_mib": round(before.ru_maxrss / 1024),
            "rss_after_mib": round(after.ru_maxrss / 1024),
            "outputs_mib": round(sum(o.nbytes for o in outputs) / 2**20),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1)}


def in_child(function: str, *args) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import tiling; "
            f"print(json.dumps(tiling.{function}(*json.loads(sys.argv[1]))))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(list(args))], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def margins(rooms: int, room_points: int, steps: int, tile: int, threads: int) -> list[dict]:
    import torch

    from pcal_cli.prepare import PrepareOptions, prepare_project
    from pcal_cli.steps.seed import seed_round
    from pcal_cli.training.checkpoint import load_checkpoint, model_from_checkpoint
    from pcal_cli.training.inference import Tiling, predict_scene, scene_voxels, voxel_tiles
    from pcal_cli.training.supervised import TrainOptions, train

    torch.set_num_threads(threads)
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        project = prepare_project("synthetic", None, Path(tmp) / "p", {"scenes": 6, "points": 100_000},
                                  PrepareOptions(regions="cells")).project
        seed_round(project, "random", "point", "1%", seed=0)
        began = time.perf_counter()
        train(project, 0, TrainOptions(cr=0.125, steps=steps, batch_size=2, device="cpu"))
        print(f"trained {steps} steps in {time.perf_counter() - began:.0f} s", flush=True)
        state = load_checkpoint(project.round_dir(0) / "model.pt")
    model = model_from_checkpoint(state, cpu)
    scene = floor_scene(rooms, room_points)
    whole = predict_scene(model, scene, ["rgb"], 0.05, 13, cpu)
    voxels = len(whole.logits)
    coords = scene_voxels(scene, ["rgb"], 0.05).coords
    rows = []
    for margin in (0, 8, 16, 32, 64):
        tiles = voxel_tiles(coords, tile, margin)
        tiled = predict_scene(model, scene, ["rgb"], 0.05, 13, cpu, Tiling(max_voxels=tile, margin=margin))
        same = ((tiled.logits - whole.logits).abs().max(dim=1).values < 1e-4).float().mean().item()
        rows.append({"margin": margin, "tiles": len(tiles), "context_ratio": sum(len(c) for _, c in tiles) / voxels,
                     "same_logits": same, "same_label": float((tiled.point_labels == whole.point_labels).mean()),
                     "differing_points": int((tiled.point_labels != whole.point_labels).sum()),
                     "accuracy": float((tiled.point_labels == scene.label).mean())})
        print(f"margin {margin:3d}: {len(tiles)} tiles, context {rows[-1]['context_ratio']:.2f} x {voxels:,} voxels, "
              f"voxels with the one-pass logits {100 * same:.1f} %, points with the one-pass label "
              f"{100 * rows[-1]['same_label']:.3f} % ({rows[-1]['differing_points']:,} differ), accuracy "
              f"{rows[-1]['accuracy']:.3f} (one pass {(whole.point_labels == scene.label).mean():.3f})", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=8)
    parser.add_argument("--room-points", type=int, default=400_000)
    parser.add_argument("--cr", type=float, default=1.0, help="network width for part 1")
    parser.add_argument("--max-voxels", type=int, default=250_000, help="tile size for part 1")
    parser.add_argument("--steps", type=int, default=60, help="training steps for part 2")
    parser.add_argument("--margin-tile", type=int, default=150_000, help="tile size for part 2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-margins", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results: dict = {}
    if not args.skip_memory:
        results["memory"] = []
        for max_voxels in (10**12, args.max_voxels):
            row = in_child("forward_memory", args.rooms, args.room_points, args.cr, max_voxels, args.threads)
            results["memory"].append(row)
            print(f"cr {row['cr']} {row['voxels']:,} voxels, {row['tiles']} tile(s) (context {row['context']:,}): "
                  f"peak RSS {row['rss_before_mib']:,} -> {row['rss_after_mib']:,} MiB "
                  f"(+{row['rss_after_mib'] - row['rss_before_mib']:,}; outputs {row['outputs_mib']:,}), "
                  f"{row['cpu_s']} CPU s", flush=True)
    if not args.skip_margins:
        results["margins"] = margins(args.rooms, args.room_points, args.steps, args.margin_tile, args.threads)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
