"""Time the geometry behind ``pcal prepare`` on one large synthetic room.

    .venv/bin/python benchmarks/prepare.py --points 1000000

Steps: room generation, grid subsampling (0.04 m), normals (k=16), supervoxels (indoor preset),
grid cells (0.25 m), k-means chunks (20) and the PLY write. For each: wall seconds, input points
per second (timed without tracemalloc), the peak of numpy/Python allocations during a second run
of the step under tracemalloc, and the process's maximum resident set size so far
(``resource.getrusage``; it never goes down).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pcal_cli.data.ply import write_ply  # noqa: E402
from pcal_cli.data.synthetic import synthetic_room  # noqa: E402
from pcal_cli.geometry import (  # noqa: E402
    estimate_normals, grid_cells, grid_subsample, kmeans_chunks, supervoxels,
)


def _max_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024**2 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def _measure(rows: list[tuple], name: str, points: int, step: Callable[[], Any],
             detail: Callable[[Any], str]) -> Any:
    """Run ``step`` twice: once timed, once under tracemalloc (which slows Python-heavy code)."""
    start = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    step()
    peak = tracemalloc.get_traced_memory()[1] / 1024**2
    tracemalloc.stop()
    rows.append((name, seconds, points / seconds if seconds > 0 else float("inf"), peak, _max_rss_mb(),
                 detail(result)))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000,
                        help="points in the room (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=0, help="room seed (default 0)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the PLY (default: a temporary folder, removed afterwards)")
    args = parser.parse_args(argv)
    if args.points < 100:
        parser.error("--points must be at least 100")

    rows: list[tuple] = []
    n = args.points
    scene = _measure(rows, "generate room", n, lambda: synthetic_room(args.seed, n, "benchmark"),
                     lambda s: f"{len(s):,} points")
    _measure(rows, "grid subsample 0.04 m", n, lambda: grid_subsample(scene.xyz, 0.04),
             lambda keep: f"{len(keep):,} kept")
    _measure(rows, "normals k=16", n, lambda: estimate_normals(scene.xyz, k=16), lambda _: "")
    regions = _measure(rows, "supervoxels indoor", n, lambda: supervoxels(scene.xyz, scene.rgb),
                       lambda ids: f"{ids.max() + 1:,} regions")
    _measure(rows, "cells 0.25 m", n, lambda: grid_cells(scene.xyz, 0.25),
             lambda ids: f"{ids.max() + 1:,} cells")
    _measure(rows, "k-means chunks 20", n, lambda: kmeans_chunks(scene.xyz, 20, seed=0),
             lambda ids: f"{ids.max() + 1:,} chunks")
    scene.region = regions
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out if args.out is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "benchmark.ply"
        _measure(rows, "write PLY", n, lambda: write_ply(path, scene),
                 lambda _: f"{path.stat().st_size / 1024**2:.1f} MiB")

    print(f"pcal prepare benchmark: {n:,} points, seed {args.seed}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    header = ("step", "seconds", "points/s", "peak MiB", "max RSS MiB", "")
    table = [header] + [(name, f"{sec:.3f}", f"{rate:,.0f}", f"{peak:.0f}", f"{rss:.0f}", note)
                        for name, sec, rate, peak, rss, note in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:5], widths[1:5])] + [row[5]]
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths[:5]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
