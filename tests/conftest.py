from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny tensors: threads only add contention (subprocesses too)

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from pcal_cli.cli import main

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def pcal(capsys):
    """Run the ``pcal`` entry point in-process: ``pcal("prepare", ...) -> Result``."""

    def run(*args: str | Path) -> Result:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> content), for byte-for-byte comparisons."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def synthetic_project(root: Path, scenes: int, points: int) -> Path:
    """A tiny prepared synthetic project (small supervoxels) at ``root``, for module fixtures."""
    from pcal_cli.prepare import PrepareOptions, prepare_project

    prepare_project("synthetic", None, root, {"scenes": scenes, "points": points},
                    PrepareOptions(regions="supervoxel", region_params={"seed_resolution": 0.8, "min_size": 40}))
    return root


def project_copy(base: Path, tmp_path: Path):
    """A fresh copy of a module's prepared project, opened."""
    import shutil

    from pcal_cli.project import Project

    shutil.copytree(base, tmp_path / "p")
    return Project.open(tmp_path / "p")
