"""Fault injection over every step: SIGKILL each command at seeded random moments, run it again,
check the project's invariants and compare with an uninterrupted run (see testing/faults.py).

    .venv/bin/python benchmarks/fault_injection.py --trials 5 --seed 0
    .venv/bin/python benchmarks/fault_injection.py --trials 20 --steps train,score --window full
    .venv/bin/python benchmarks/fault_injection.py --trials 0 --crash-points --after-end --inprocess

Prints one line per trial, then a table: step, trials, kills that landed mid-run (the command was
still running), kills that landed after the command's first write, failures. Exit code 1 on any
failure, with the kill point, what broke and the folder of the failed trial (kept).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# the harness is testing/faults.py at the repository root: a test helper, not in the installed package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testing.faults import STEPS, FaultHarness, KillResult, format_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5, help="random kills per step (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill delays (default 0)")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help=f"comma-separated steps (default: all: {','.join(STEPS)})")
    parser.add_argument("--window", choices=("work", "full"), default="work",
                        help="draw delays while the step holds the project lock (work, default) "
                             "or over the whole command, interpreter start included (full)")
    parser.add_argument("--crash-points", action="store_true",
                        help="also kill each step once at each of its crash points (function entries)")
    parser.add_argument("--after-end", action="store_true",
                        help="also rerun each finished step (a kill after the last write)")
    parser.add_argument("--inprocess", action="store_true",
                        help="run references and reruns in this process (faster; the killed runs are "
                             "always subprocesses)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the runs go (default: a temporary folder; failed trials are kept)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per command")
    args = parser.parse_args(argv)

    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    if args.trials < 0:
        parser.error("--trials must be >= 0")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pcal-faults-"))
    harness = FaultHarness(workdir, timeout=args.timeout, keep=False, inprocess=args.inprocess)

    def on_trial(step: str, result: KillResult) -> None:
        state = "FAIL" if result.failed else "ok"
        where = ("mid-run" if result.killed else "rerun of the finished step" if result.kill_point == "after the end"
                 else "missed (finished first)")
        wrote = ", after writes" if result.killed and result.wrote else ""
        print(f"  {step:13s} {result.kill_point:60s} {where}{wrote}: {state}", flush=True)
        if result.failed:
            print("    " + result.describe().replace("\n", "\n    "), flush=True)
        if result.debris:
            print(f"    debris left (not a failure): {', '.join(result.debris[:4])}", flush=True)

    began = time.perf_counter()
    reports = []
    for step in steps:
        ref = harness.reference(step)
        low, high = ref.timing.window(args.window)
        print(f"{step}: reference {ref.timing.duration:.2f} s, kill window {low:.2f}-{high:.2f} s", flush=True)
        reports.append(harness.run_trials(step, args.trials, args.seed, args.window, args.crash_points,
                                          args.after_end, on_trial))
    print()
    print(format_table(reports))
    failures = sum(len(r.failures) for r in reports)
    print(f"\n{failures} failure(s) in {time.perf_counter() - began:.0f} s; runs in {workdir}")
    for report in reports:
        if report.failures:
            print("\n" + report.describe())
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
