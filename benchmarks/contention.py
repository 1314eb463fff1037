"""Training alone vs beside a second identical training, on the same machine, in one run.

For each thread setting, `pcal train --full` runs once alone, then twice side by side (two copies
of one project, the second started --stagger seconds after the first, as a job started beside a
running one); the slowdown is the mean side-by-side wall time over the alone wall time (two jobs
sharing all the cores cannot do better than 2x when one alone already uses them all).

    .venv/bin/python benchmarks/contention.py                    # settings: default, threads-1, passive
    .venv/bin/python benchmarks/contention.py --steps 60 --points 8000
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
SETTINGS = {
    "all-cores": ({}, ["--threads", str(CPUS)]),  # torch's own choice: one thread per core
    "pcal": ({}, []),  # pcal's choice: the CPUs this process may use
    "pcal-passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, []),  # and waiting OpenMP threads sleep
    "threads-1": ({}, ["--threads", "1"]),
}


def train(project: Path, steps: int, env: dict[str, str], flags: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "pcal_cli", *flags, "train", "-p", str(project), "--full", "--steps",
               str(steps), "--force", "--device", "cpu", "--checkpoint-every", str(10 * steps)]
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PCAL_THREADS", "OMP_WAIT_POLICY")}
    return subprocess.Popen(command, env={**clean, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait(process: subprocess.Popen, began: float) -> float:
    _, error = process.communicate()
    if process.returncode:
        raise SystemExit(f"contention: pcal train failed: {error.strip().splitlines()[-1:]}")
    return time.perf_counter() - began


def side_by_side(first: Path, second: Path, steps: int, env: dict[str, str], flags: list[str],
                 stagger: float) -> float:
    """Mean wall time of two trainings, the second started ``stagger`` seconds after the first
    (as a job started beside a running one); each is timed from its own start."""
    began_a = time.perf_counter()
    a = train(first, steps, env, flags)
    time.sleep(stagger)
    began_b = time.perf_counter()
    b = train(second, steps, env, flags)
    wall_b = wait(b, began_b)
    wall_a = wait(a, began_a)
    return (wall_a + wall_b) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--points", type=int, default=8000, help="points per synthetic room")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}")
    parser.add_argument("--stagger", type=float, default=30.0, help="seconds between the two starts")
    parser.add_argument("--cooldown", type=float, default=60.0, help="idle seconds between measurements")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pcal-contention-"))
    try:
        base = work / "a"
        subprocess.run([sys.executable, "-m", "pcal_cli", "prepare", "synthetic", "-p", str(base), "--scenes", "6",
                        "--points", str(args.points)], check=True, stdout=subprocess.DEVNULL)
        shutil.copytree(base, work / "b")
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"{cpus} usable CPUs, load average {os.getloadavg()[0]:.2f} at the start; pcal train --full "
              f"--steps {args.steps} on 4 synthetic rooms of {args.points} points (MinkUNet, the synthetic profile)")
        print(f"{'setting':<12} {'alone s':>9} {'side by side s':>15} {'slowdown':>9} {'vs first alone':>15}")
        reference = None
        for name in args.settings.split(","):
            env, flags = SETTINGS[name]
            wait(train(base, 2, env, flags), time.perf_counter())  # warm the caches (files, bytecode)
            time.sleep(args.cooldown)  # let the load average fall back
            alone = wait(train(base, args.steps, env, flags), time.perf_counter())
            time.sleep(args.cooldown)
            both = side_by_side(base, work / "b", args.steps, env, flags, args.stagger)
            time.sleep(args.cooldown)
            reference = reference or alone
            print(f"{name:<12} {alone:9.1f} {both:15.1f} {both / alone:8.2f}x {both / reference:14.2f}x", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
