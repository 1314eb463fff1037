"""Large scenes and many scenes: one huge scene through a round, and label storage per round.

    .venv/bin/python benchmarks/scale.py --points 50000000            # both parts
    .venv/bin/python benchmarks/scale.py --points 2000000 --skip-labels
    .venv/bin/python benchmarks/scale.py --skip-pipeline --label-scenes 20000 --label-sample 1000
    .venv/bin/python benchmarks/scale.py --skip-pipeline --skip-labels --many-scenes 20000   # part (c)

Part (a), one scene of ``--points`` points: writes a floor of synthetic rooms (``--room-points``
points each, laid side by side on a 10 m x 8 m grid, so the scene grows in area like a building
or a city block, not in density) as ONE binary PLY, streamed room by room, into
``WORK/raw/train/big.ply``, and a test scene built the same way (``--test-points``, default as
many) into ``raw/test/``.
Then runs, each as its own process, measuring wall time and the peak resident memory of that
process (``os.wait4``; the scene writer and the voxel count run in child processes too, because a
child's ``ru_maxrss`` starts at its parent's peak, so the benchmark process itself stays small):

    pcal prepare folder WORK/raw -p WORK/proj --classes <13 S3DIS classes> --regions cells
    pcal seed --unit point --budget 0.1%      pcal train --steps 2 --cr 0.125 (--cr)
    pcal score --scorer margin                pcal select --budget 0.01%
    pcal label --oracle                       pcal evaluate

Part (b), label storage of one round: ``--label-scenes`` scans of ``--label-points`` points with
``--label-share`` of their points labelled. Writes ``--label-sample`` of them (default 1,000) in
the dense ``.npy`` format of earlier versions and in the sparse ``.npz`` format, measures bytes
(apparent size and disk blocks), write and read time, and extrapolates linearly to
``--label-scenes``. Labelled points are laid out two ways: ``scattered`` (uniformly random
points, the worst case for a sparse file) and ``regions`` (runs of 40 consecutive points, like a
region of a LiDAR scan whose points are stored ring by ring).

Part (c), many scenes (``--many-scenes N``, off by default): the same round on a project of N
small synthetic rooms (``--many-points`` each, default 2,000; a third of them test rooms), each
command its own measured process, so time per scene and peak memory can be compared between
two values of N (memory should not grow with N):

    pcal prepare synthetic --scenes N --points P --regions cells
    pcal seed --unit point --budget 1%      pcal train --steps 2 --cr 0.125
    pcal score --scorer margin (per cell)   pcal select --budget 0.1%
    pcal label --oracle                     pcal evaluate

``--many-shards K`` runs score and evaluate as K ``--shard i/K`` processes side by side, then
``pcal evaluate --merge`` (the job-array recipe of docs/distributed.md on one machine).

Threads: ``--threads`` (default 2) for torch and BLAS in every process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PITCH = (10.0, 8.0)  # metres between room origins (rooms are at most 9 m x 7 m)
VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
                   ("label", "<i2")])


def write_floor_ply(path: Path | str, points: int, room_points: int, seed: int) -> dict:
    """A PLY of ``points`` points: synthetic rooms side by side, written room by room (memory:
    one room at a time)."""
    from pcal_cli.data.synthetic import synthetic_room

    path = Path(path)
    rooms = max(1, math.ceil(points / room_points))
    columns = math.ceil(math.sqrt(rooms))
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ("ply\nformat binary_little_endian 1.0\ncomment synthetic floor of rooms (benchmarks/scale.py)\n"
              f"element vertex {points}\n" + "".join(f"property {t} {n}\n" for n, t in (
                  ("x", "float"), ("y", "float"), ("z", "float"), ("red", "uchar"), ("green", "uchar"),
                  ("blue", "uchar"), ("label", "short"))) + "end_header\n")
    began = time.perf_counter()
    with open(path, "wb") as handle:
        handle.write(header.encode("ascii"))
        left = points
        for index in range(rooms):
            n = min(room_points, left) if index < rooms - 1 else left
            left -= n
            room = synthetic_room(seed, n, f"{path.stem}_{index:05d}")
            block = np.empty(n, dtype=VERTEX)
            block["x"] = room.xyz[:, 0] + PITCH[0] * (index % columns)
            block["y"] = room.xyz[:, 1] + PITCH[1] * (index // columns)
            block["z"] = room.xyz[:, 2]
            block["red"], block["green"], block["blue"] = room.rgb.T
            block["label"] = room.label
            handle.write(block.tobytes())
    return {"rooms": rooms, "seconds": time.perf_counter() - began, "bytes": path.stat().st_size,
            "extent_m": [PITCH[0] * min(columns, rooms), PITCH[1] * math.ceil(rooms / columns)]}


def in_child(function: str, *args) -> dict:
    """Run one of this module's functions in a child process and return its JSON result.

    The benchmark process must stay small: a child's peak RSS (``ru_maxrss``) starts at its
    parent's peak when it is spawned, so a large parent would hide the children's figures."""
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import scale; "
            f"print(json.dumps(scale.{function}(*json.loads(sys.argv[1]))))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps([str(a) if isinstance(a, Path) else a
                                                                   for a in args])],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_measured(args: list[str], threads: int, log: Path) -> dict:
    """Run one command as a child process; its wall time and its own peak RSS (``os.wait4``)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads)}
    began = time.perf_counter()
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(args)}\n".encode())
        out.flush()
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - began
    return {"command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(args)), "code": process.returncode,
            "seconds": round(seconds, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024)}


def pipeline(work: Path, points: int, room_points: int, test_points: int, threads: int, seed: int,
             cr: float) -> dict:
    from pcal_cli.data.classes import S3DIS_CLASSES

    raw, proj, log = work / "raw", work / "proj", work / "commands.log"
    made = {"train": in_child("write_floor_ply", str(raw / "train" / "big.ply"), points, room_points, seed)}
    print(f"wrote raw/train/big.ply: {points:,} points, {made['train']['rooms']} rooms, "
          f"{made['train']['bytes'] / 2**20:,.0f} MiB in {made['train']['seconds']:.1f} s", flush=True)
    made["test"] = in_child("write_floor_ply", str(raw / "test" / "big_test.ply"), test_points, room_points, seed + 1)
    pcal = str(Path(sys.executable).with_name("pcal"))
    device = ("--device", "cpu")
    steps = [
        ("prepare", [pcal, "prepare", "folder", str(raw), "-p", str(proj), "--classes", ",".join(S3DIS_CLASSES),
                     "--regions", "cells"]),
        ("seed", [pcal, "seed", "-p", str(proj), "--unit", "point", "--budget", "0.1%", "--seed", str(seed)]),
        ("train", [pcal, "train", "-p", str(proj), "--steps", "2", "--cr", str(cr), "--batch-size", "1", *device]),
        ("score", [pcal, "score", "-p", str(proj), "--scorer", "margin", "--unit", "region", *device]),
        ("select", [pcal, "select", "-p", str(proj), "--budget", "0.01%"]),
        ("label", [pcal, "label", "-p", str(proj), "--oracle"]),
        ("evaluate", [pcal, "evaluate", "-p", str(proj), "--round", "0", *device]),
    ]
    results = {"points": points, "room_points": room_points, "test_points": test_points, "cr": cr, "generate": made,
               "steps": {}}
    print(f"{'step':10s} {'seconds':>9s} {'peak RSS MiB':>13s}", flush=True)
    for name, args in steps:
        result = run_measured(args, threads, log)
        results["steps"][name] = result
        print(f"{name:10s} {result['seconds']:9.1f} {result['peak_rss_mib']:13,d}"
              + ("" if result["code"] == 0 else f"   FAILED (exit {result['code']}, see {log})"), flush=True)
        if result["code"] != 0:
            break
        if name == "prepare":
            results["voxels"] = in_child("voxel_count", str(proj / "scenes" / "train" / "big.ply"))
            print(f"{'':10s} train scene: {results['voxels']['voxels']:,} voxels of 5 cm -> "
                  f"{results['voxels']['tiles']} inference tile(s) of at most {results['voxels']['max_voxels']:,}",
                  flush=True)
    return results


def run_measured_parallel(commands: list[list[str]], threads: int, log: Path) -> dict:
    """Run commands side by side (shards); wall time of the group and the largest peak RSS."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads)}
    began = time.perf_counter()
    codes, peak = [], 0
    with open(log, "ab") as out:
        out.write("".join(f"\n$ {' '.join(args)} &" for args in commands).encode() + b"\n")
        out.flush()
        processes = [subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env) for args in commands]
        for process in processes:
            _, status, usage = os.wait4(process.pid, 0)
            codes.append(os.waitstatus_to_exitcode(status))
            peak = max(peak, usage.ru_maxrss)
    return {"command": f"{len(commands)} x " + " ".join(commands[0][1:3]), "code": max(codes, key=abs),
            "seconds": round(time.perf_counter() - began, 1), "peak_rss_mib": round(peak / 1024)}


def pipeline_many(work: Path, scenes: int, points: int, threads: int, seed: int, cr: float, shards: int) -> dict:
    """Part (c): one round over a project of ``scenes`` small synthetic rooms; ``score`` and
    ``evaluate`` as ``shards`` processes side by side (then ``evaluate --merge``)."""
    proj, log = work / "many", work / "many_commands.log"
    pcal = str(Path(sys.executable).with_name("pcal"))
    device = ("--device", "cpu")

    def sharded(*args: str) -> list[list[str]]:
        if shards == 1:
            return [[pcal, *args]]
        return [[pcal, *args, "--shard", f"{i}/{shards}"] for i in range(1, shards + 1)]

    steps = [
        ("prepare", [[pcal, "prepare", "synthetic", "-p", str(proj), "--scenes", str(scenes), "--points",
                      str(points), "--regions", "cells", "--seed", str(seed)]]),
        ("seed", [[pcal, "seed", "-p", str(proj), "--unit", "point", "--budget", "1%", "--seed", str(seed)]]),
        ("train", [[pcal, "train", "-p", str(proj), "--steps", "2", "--cr", str(cr), "--batch-size", "2", *device]]),
        ("score", sharded("score", "-p", str(proj), "--scorer", "margin", "--unit", "region", *device)),
        ("select", [[pcal, "select", "-p", str(proj), "--budget", "0.1%"]]),
        ("label", [[pcal, "label", "-p", str(proj), "--oracle"]]),
        ("evaluate", sharded("evaluate", "-p", str(proj), "--round", "0", *device)),
    ]
    if shards > 1:
        steps.append(("merge", [[pcal, "evaluate", "-p", str(proj), "--round", "0", "--merge"]]))
    results = {"scenes": scenes, "points": points, "cr": cr, "shards": shards, "steps": {}}
    print(f"\nmany scenes: {scenes:,} rooms of {points:,} points, score and evaluate in {shards} shard(s)",
          flush=True)
    print(f"{'step':10s} {'seconds':>9s} {'ms/scene':>9s} {'peak RSS MiB':>13s}", flush=True)
    for name, commands in steps:
        result = (run_measured(commands[0], threads, log) if len(commands) == 1
                  else run_measured_parallel(commands, threads, log))
        results["steps"][name] = result
        print(f"{name:10s} {result['seconds']:9.1f} {1e3 * result['seconds'] / scenes:9.1f} "
              f"{result['peak_rss_mib']:13,d}"
              + ("" if result["code"] == 0 else f"   FAILED (exit {result['code']}, see {log})"), flush=True)
        if result["code"] != 0:
            break
    labels = sorted((proj / "rounds" / "r001" / "labels").glob("*"))
    results["round1_label_files"] = len(labels)
    results["round1_label_bytes"] = sum(p.stat().st_size for p in labels)
    return results


def voxel_count(path: Path | str) -> dict:
    """Voxels of the prepared scene and the tiles inference splits it into (default tiling)."""
    from pcal_cli.data.ply import read_ply
    from pcal_cli.training.inference import Tiling, scene_voxels, voxel_tiles

    voxels = scene_voxels(read_ply(path), [], 0.05)
    tiling = Tiling()
    tiles = voxel_tiles(voxels.coords, tiling.max_voxels, tiling.margin)
    return {"voxels": len(voxels.coords), "tiles": len(tiles), "max_voxels": tiling.max_voxels,
            "margin": tiling.margin, "context_voxels": int(sum(len(c) for _, c in tiles))}


def label_storage(scenes: int, points: int, share: float, sample: int, work: Path, seed: int) -> dict:
    from pcal_cli.atomic import write_npy
    from pcal_cli.label_files import read_label_file, write_label_file

    rng = np.random.default_rng(seed)
    sample = min(sample, scenes)
    known = max(1, round(share * points))
    results = {"scenes": scenes, "points": points, "share": share, "sample": sample, "layouts": {}}
    for layout in ("scattered", "regions"):
        folder = work / f"labels_{layout}"
        folder.mkdir(parents=True, exist_ok=True)
        stats = {fmt: {"bytes": 0, "disk": 0, "write_s": 0.0, "read_s": 0.0} for fmt in ("dense", "sparse")}
        for index in range(sample):
            labels = np.full(points, -1, dtype=np.int16)
            if layout == "scattered":
                where = rng.choice(points, known, replace=False)
            else:
                run = 40
                starts = rng.choice(points // run, max(1, known // run), replace=False) * run
                where = (starts[:, None] + np.arange(run)).ravel()
            labels[where] = rng.integers(0, 19, len(where))
            for fmt, suffix in (("dense", ".npy"), ("sparse", ".npz")):
                path = folder / f"{index:06d}{suffix}"
                began = time.perf_counter()
                (write_npy if fmt == "dense" else write_label_file)(path, labels)
                stats[fmt]["write_s"] += time.perf_counter() - began
                began = time.perf_counter()
                back = read_label_file(path)
                stats[fmt]["read_s"] += time.perf_counter() - began
                assert np.array_equal(back, labels)
                info = path.stat()
                stats[fmt]["bytes"] += info.st_size
                stats[fmt]["disk"] += info.st_blocks * 512
        scale = scenes / sample
        for fmt in stats:
            s = stats[fmt]
            s.update(per_scene_bytes=s["bytes"] / sample, per_round_mib=s["bytes"] * scale / 2**20,
                     per_round_disk_mib=s["disk"] * scale / 2**20, write_ms=1e3 * s["write_s"] / sample,
                     read_ms=1e3 * s["read_s"] / sample)
        results["layouts"][layout] = stats
        shutil.rmtree(folder)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=50_000_000, help="points of the big training scene")
    parser.add_argument("--room-points", type=int, default=1_000_000, help="points per synthetic room")
    parser.add_argument("--test-points", type=int, default=None,
                        help="points of the test scene (default: as many as --points)")
    parser.add_argument("--cr", type=float, default=0.125, help="network width of the tiny model (1.0: full)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--skip-labels", action="store_true")
    parser.add_argument("--label-scenes", type=int, default=20_000)
    parser.add_argument("--label-points", type=int, default=120_000)
    parser.add_argument("--label-share", type=float, default=0.001)
    parser.add_argument("--label-sample", type=int, default=1_000)
    parser.add_argument("--many-scenes", type=int, default=0, help="part (c): rooms in the many-scene project "
                        "(default 0: skip part (c))")
    parser.add_argument("--many-points", type=int, default=2_000, help="part (c): points per room")
    parser.add_argument("--many-shards", type=int, default=1, help="part (c): score and evaluate as this many "
                        "shards side by side (each with --threads threads)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="pcal-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    with contextlib.suppress(OSError):
        total = next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
        results["machine"]["memory"] = " ".join(total.split()[1:])
    try:
        if not args.skip_pipeline:
            results["pipeline"] = pipeline(work, args.points, args.room_points, args.test_points or args.points,
                                           args.threads, args.seed, args.cr)
        if not args.skip_labels:
            results["labels"] = label_storage(args.label_scenes, args.label_points, args.label_share,
                                              args.label_sample, work, args.seed)
            print(f"\nlabel storage per round: {args.label_scenes:,} scans x {args.label_points:,} points, "
                  f"{100 * args.label_share:g} % labelled (measured on {results['labels']['sample']:,}, "
                  "extrapolated)")
            print(f"{'layout':10s} {'format':7s} {'B/scene':>9s} {'MiB/round':>10s} {'disk MiB':>9s} "
                  f"{'write ms':>9s} {'read ms':>8s}")
            for layout, stats in results["labels"]["layouts"].items():
                for fmt, s in stats.items():
                    print(f"{layout:10s} {fmt:7s} {s['per_scene_bytes']:9,.0f} {s['per_round_mib']:10,.1f} "
                          f"{s['per_round_disk_mib']:9,.1f} {s['write_ms']:9.2f} {s['read_ms']:8.2f}")
        if args.many_scenes:
            results["many"] = pipeline_many(work, args.many_scenes, args.many_points, args.threads, args.seed, args.cr,
                                             args.many_shards)
    finally:
        results["benchmark_process_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        if args.work is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"working folder kept: {work}")


if __name__ == "__main__":
    main()
