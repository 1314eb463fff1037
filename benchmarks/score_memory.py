"""Scoring a large scene round after round: time per scorer and memory that must stay flat.

    .venv/bin/python benchmarks/score_memory.py --points 1000000 --rounds 5

Prepares one synthetic training room of ``--points`` points (plus a small test room), labels a
random 0.1 % of it, trains a tiny MinkUNet for a few steps, then scores the room ``--rounds``
times with each scorer (forcing a re-score each time) and selects, printing seconds, points/s
and the process's resident memory after each round. Flat memory = no leak across rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import tempfile
import time
from pathlib import Path

import torch


def rss_mib() -> float:
    """Current resident set size (MiB), from /proc (falls back to the peak)."""
    with contextlib.suppress(OSError):  # no /proc on this system
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scorers", default="random,margin,entropy,segment_entropy,mc_dropout")
    parser.add_argument("--unit", default="region")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from pcal_cli.prepare import PrepareOptions, prepare_project
    from pcal_cli.steps.score import ScoreSettings, score_round
    from pcal_cli.steps.seed import seed_round
    from pcal_cli.steps.select import select_round
    from pcal_cli.training.supervised import TrainOptions, train

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "big"
        began = time.perf_counter()
        project = prepare_project("synthetic", None, root, {"scenes": 2, "points": args.points},
                                  PrepareOptions()).project
        # synthetic puts the last third in test: with 2 rooms, room_000 trains and room_001 tests
        print(f"prepared 2 rooms of {args.points:,} points in {time.perf_counter() - began:.1f} s")
        seed_round(project, "random", "point", "0.1%", seed=0)
        train(project, 0, TrainOptions(cr=0.125, steps=3, batch_size=1, device="cpu", max_points=args.points))
        print(f"{'scorer':16s} {'round':>5s} {'score s':>8s} {'points/s':>10s} {'select s':>8s} {'RSS MiB':>8s}")
        for name in args.scorers.split(","):
            settings = ScoreSettings(scorer=name, unit=args.unit)
            for index in range(args.rounds):
                began = time.perf_counter()
                score_round(project, 0, settings, device="cpu", force=True)
                scored = time.perf_counter() - began
                began = time.perf_counter()
                select_round(project, 0, "0.1%", force=True)
                selected = time.perf_counter() - began
                print(f"{name:16s} {index + 1:5d} {scored:8.2f} {args.points / scored:10,.0f} {selected:8.3f} "
                      f"{rss_mib():8.0f}", flush=True)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
