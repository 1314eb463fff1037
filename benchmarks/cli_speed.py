"""How fast the command line answers: `pcal --help`, `--version` and every `pcal CMD --help`,
against `python -c pass` (the interpreter alone), as medians of --repeats runs.

It runs the `pcal` console script of the interpreter's environment, as a user types it (else
`python -m pcal_cli`, which adds runpy's own imports).

    .venv/bin/python benchmarks/cli_speed.py --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = [["--help"], ["--version"], *([name, "--help"] for name in (
    "prepare", "seed", "train", "evaluate", "score", "select", "label", "round", "compare", "report", "check",
    "view"))]


def median_seconds(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    base = median_seconds([sys.executable, "-c", "pass"], args.repeats)
    print(f"load average {os.getloadavg()[0]:.2f}; median of {args.repeats} runs; python -c pass: {base:.3f} s")
    script = Path(sys.executable).with_name("pcal")
    pcal = [str(script)] if script.is_file() else [sys.executable, "-m", "pcal_cli"]
    print(f"command: {' '.join(pcal)}")
    print(f"{'command':<26} {'seconds':>8} {'ratio':>7}")
    worst = 0.0
    for command in COMMANDS:
        seconds = median_seconds([*pcal, *command], args.repeats)
        worst = max(worst, seconds)
        print(f"{'pcal ' + ' '.join(command):<26} {seconds:8.3f} {seconds / base:6.1f}x")
    print(f"slowest: {worst:.3f} s")


if __name__ == "__main__":
    main()
