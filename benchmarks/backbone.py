"""Benchmark a whole backbone (training step and inference) on one voxelised synthetic room.

A training step is forward + cross-entropy + backward + SGD step on a fresh ``SparseTensor``
(so kernel maps are built every step, as with a new batch); inference is a forward pass in eval
mode under ``no_grad``. Medians over ``--repeats`` after ``--warmup`` untimed steps.

    .venv/bin/python benchmarks/backbone.py                      # MinkUNet cr 0.5, 100k points, CPU
    .venv/bin/python benchmarks/backbone.py --model spvcnn --cr 1.0 --device cuda
    .venv/bin/python benchmarks/backbone.py --profiles   # a real training step: old defaults vs the synthetic profile
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import numpy as np
import torch
from torch.nn import functional as F

from pcal_cli.data.synthetic import synthetic_room
from pcal_cli.models import MODELS, build_model
from pcal_cli.sparse import SparseTensor, downsample_coords, sparse_quantize

NUM_CLASSES = 13


def room_batch(points: int, voxel_size: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Voxel features ``[V, 6]`` (rgb/255 - 0.5, centred xyz of the first point), coordinates
    ``[V, 4]`` (batch 0) and labels ``[V]`` of a synthetic room."""
    scene = synthetic_room(seed=seed, points=points, name="benchmark")
    coords, index = sparse_quantize(scene.xyz, voxel_size, return_index=True)
    feats = np.concatenate([scene.rgb / 255.0 - 0.5, scene.xyz - scene.xyz.mean(0)], axis=1)
    batch = np.zeros((len(coords), 1), np.int32)
    return (
        torch.from_numpy(feats[index].astype(np.float32)),
        torch.from_numpy(np.concatenate([batch, coords], axis=1)),
        torch.from_numpy(scene.label[index].astype(np.int64)),
    )


def level_sizes(coords: torch.Tensor, levels: int = 5) -> list[int]:
    """Voxel counts at tensor strides 1, 2, 4, 8, 16."""
    sizes = [coords.shape[0]]
    for _ in range(levels - 1):
        coords = downsample_coords(coords, 2)
        sizes.append(coords.shape[0])
    return sizes


def clock(device: torch.device) -> float:
    """``time.perf_counter`` after the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="minkunet")
    parser.add_argument("--cr", type=float, default=0.5, help="channel ratio")
    parser.add_argument("--points", type=int, default=100_000, help="points in the synthetic room")
    parser.add_argument("--voxel-size", type=float, default=0.05, help="metres")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    feats, coords, labels = room_batch(args.points, args.voxel_size, args.seed)
    sizes = level_sizes(coords)
    feats, coords, labels = feats.to(device), coords.to(device), labels.to(device)
    model = build_model(args.model, feats.shape[1], NUM_CLASSES, cr=args.cr, seed=args.seed).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train_step() -> dict[str, float]:
        model.train()
        start = clock(device)
        logits, _ = model(SparseTensor(feats, coords))
        loss = F.cross_entropy(logits, labels)
        forward = clock(device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        backward = clock(device)
        optimizer.step()
        end = clock(device)
        return {"train": end - start, "forward": forward - start, "backward": backward - forward,
                "step": end - backward}

    def inference() -> float:
        model.eval()
        start = clock(device)
        with torch.no_grad():
            model(SparseTensor(feats, coords))
        return clock(device) - start

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(args.warmup):
        train_step()
    steps = [train_step() for _ in range(args.repeats)]
    for _ in range(args.warmup):
        inference()
    infer = [inference() for _ in range(args.repeats)]

    parameters = sum(p.numel() for p in model.parameters())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{args.model} cr={args.cr} ({parameters / 1e6:.2f} M parameters), {NUM_CLASSES} classes, "
        f"{feats.shape[1]} input channels; torch {torch.__version__} on {device}, {args.threads} threads"
    )
    print(
        f"room: {args.points} points -> {sizes[0]} voxels at {args.voxel_size * 100:g} cm "
        f"(levels 1/2/4/8/16: {' / '.join(map(str, sizes))}); "
        f"{args.repeats} repeats after {args.warmup} warm-up"
    )
    print(f"load average (1 min) at the end: {load:.2f} on {os.cpu_count()} cores")
    header = f"{'measure':<44} {'median':>10} {'best':>10}  unit"
    print(header)
    print("-" * len(header))
    rows = [
        ("train step (fwd + loss + bwd + SGD)", [r["train"] for r in steps]),
        ("  forward + loss (incl. kernel maps)", [r["forward"] for r in steps]),
        ("  backward", [r["backward"] for r in steps]),
        ("  SGD step", [r["step"] for r in steps]),
        ("inference (eval, no_grad)", infer),
    ]
    for name, values in rows:
        print(f"{name:<44} {statistics.median(values):10.3f} {min(values):10.3f}  s")
    rate = [sizes[0] / t for t in infer]
    print(f"{'inference throughput':<44} {statistics.median(rate):10.0f} {max(rate):10.0f}  voxels/s")
    train = [sizes[0] / r["train"] for r in steps]
    print(f"{'training throughput':<44} {statistics.median(train):10.0f} {max(train):10.0f}  voxels/s")
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"{'peak memory: max RSS of the process':<44} {max_rss:10.0f} {'':>10}  MiB")
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        print(f"{'peak memory: torch.cuda.max_memory_allocated':<44} {peak:10.0f} {'':>10}  MiB")



def training_steps(points: int, cr: float, voxel_size: float, threads: int, steps: int, seed: int = 0) -> float:
    """Median seconds of a real training step (crop, augment, voxelise, forward, backward, AdamW)
    on two synthetic rooms of ``points`` points, as ``pcal train`` runs it."""
    from pcal_cli.data.classes import S3DIS_CLASSES, S3DIS_COLORS
    from pcal_cli.project import ProjectConfig
    from pcal_cli.training.recipes import make_recipe
    from pcal_cli.training.supervised import TrainOptions, _optimizer

    torch.set_num_threads(threads)
    rooms = [synthetic_room(seed=seed, points=points, name=f"room_{i:03d}") for i in range(4)]
    scenes = [(room, room.label.astype(np.int16)) for room in rooms]
    config = ProjectConfig(dataset="synthetic", classes=list(S3DIS_CLASSES), colors=[list(c) for c in S3DIS_COLORS],
                           splits={"train": [r.name for r in rooms]}, voxel_size=voxel_size)
    options = TrainOptions(cr=cr, lr=0.01, batch_size=2, seed=seed)
    model = build_model("minkunet", 6, len(S3DIS_CLASSES), cr=cr, seed=seed)
    recipe = make_recipe(model, options, len(S3DIS_CLASSES))
    optimizer = _optimizer(model, options)
    model.train()
    times = []
    for step in range(steps + 2):
        began = time.perf_counter()
        recipe.step(optimizer, scenes, config, step, torch.device("cpu"))
        times.append(time.perf_counter() - began)
    return statistics.median(times[2:])


def profiles_main() -> None:
    """The training step before and after the training profiles, in one run (``--profiles``)."""
    parser = argparse.ArgumentParser(description="training step: old defaults vs the synthetic profile")
    parser.add_argument("--profiles", action="store_true")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    args = parser.parse_args()
    from pcal_cli.training.profiles import PROFILES

    synthetic = PROFILES["synthetic"]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    settings = [
        ("before: cr 0.5, rooms of 20,000 points (the old defaults and demo)", 20_000, 0.5, 0.05, cpus),
        ("after: the synthetic profile (cr 0.25, rooms of 8,000 points)", 8_000, synthetic.train["cr"],
         synthetic.voxel_size, cpus),
        ("after, one thread (two trainings side by side: pcal compare --workers 2)", 8_000, synthetic.train["cr"],
         synthetic.voxel_size, 1),
    ]
    print(f"torch {torch.__version__}, {cpus} usable CPUs, load average {os.getloadavg()[0]:.2f}; median of "
          f"{args.steps} steps, batch 2 rooms, AdamW")
    first = None
    for name, points, cr, voxel, threads in settings:
        seconds = training_steps(points, cr, voxel, threads, args.steps)
        first = first or seconds
        round_minutes = synthetic.train["finetune_steps"] * seconds / 60
        print(f"{name:<75} {seconds:6.3f} s/step ({first / seconds:4.2f}x), {threads} thread(s); a fine-tuned round "
              f"of {synthetic.train['finetune_steps']} steps: {round_minutes:.1f} min", flush=True)


if __name__ == "__main__":
    profiles_main() if "--profiles" in sys.argv else main()
