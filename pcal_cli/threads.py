"""CPU threads that fit the machine: what this process may use, not how many cores exist.

A process may be limited to fewer CPUs than the machine has: by its CPU affinity (``taskset``,
SLURM, containers) or by a cgroup CPU quota (Docker ``--cpus``, Kubernetes limits). torch, left to
itself, starts one thread per core of the machine, and OpenMP threads spin while they wait: two
such trainings on two cores run far slower than one after the other. pcal therefore chooses

1. ``--threads N`` when given (``pcal --threads N CMD``), else
2. ``OMP_NUM_THREADS`` when set, else
3. the CPUs this process may use: its affinity, capped by the cgroup quota.

The count is never taken from the machine's load: the number of threads changes floating-point
results (a sum split over more threads adds in another order), so the same command and seed on the
same machine must use the same count to give the same weights and selections. Pass ``--threads``
to reproduce a run on another machine.

Set it before torch is imported (the CLI does, in its root callback); :func:`configure` also
applies it to an already imported torch.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from pcal_cli.errors import PcalError

CGROUP_ROOT = Path("/sys/fs/cgroup")


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (all of the machine's where that is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / period), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def usable_cpus(root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may use: its affinity, capped by the cgroup quota (rounded up)."""
    cpus = affinity_cpus()
    quota = cgroup_quota(root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


def choose_threads(requested: int | None = None, environ: dict[str, str] | None = None,
                   root: Path = CGROUP_ROOT) -> int:
    """``requested``, else ``OMP_NUM_THREADS``, else :func:`usable_cpus`."""
    environ = os.environ if environ is None else environ
    if requested is not None:
        if requested < 1:
            raise PcalError(f"--threads must be at least 1, got {requested}")
        return int(requested)
    given = environ.get("OMP_NUM_THREADS", "").strip()
    if given:
        try:
            value = int(given.split(",")[0])
        except ValueError:
            raise PcalError(f"OMP_NUM_THREADS={given!r} is not a number of threads") from None
        if value >= 1:
            return value
    return usable_cpus(root)


def configure(requested: int | None = None) -> int:
    """Choose the thread count and apply it (environment for torch not imported yet, and torch
    itself when it is); return it."""
    threads = choose_threads(requested)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    return threads
