"""Every script in examples/ runs on tiny data, so none of them rots."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from pcal_cli.data.ply import write_ply
from pcal_cli.data.scene import Scene
from pcal_cli.project import Project

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script, *args, cwd, **env):
    """Run an example with this interpreter's ``pcal`` first on PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(["bash", str(EXAMPLES / script), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "PATH": path, **env}, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def test_every_example_is_tested():
    tested = {"synthetic_demo.sh", "prepare_folder.sh", "compare_methods.sh",
              "cloudcompare_labelling.sh"}  # run by tests/test_annotation.py
    assert {p.name for p in EXAMPLES.glob("*.sh")} == tested


def test_synthetic_demo(tmp_path):
    tiny = dict(SCENES="3", POINTS="2000", ROUNDS="2", STEPS="2", FINETUNE_STEPS="2", FULL_STEPS="2", CR="0.125",
                DEVICE="cpu", SEED_BUDGET="10%", BUDGET="8%", WORKERS="1")
    done = _run("synthetic_demo.sh", tmp_path / "demo", cwd=tmp_path, **tiny)
    assert "class histogram" in done.stdout and "mIoU" in done.stdout
    assert "% of full supervision with" in done.stdout and "random at the same points" in done.stdout
    project = Project.open(tmp_path / "demo")
    assert project.config.splits["train"] == ["room_000", "room_001"] and project.config.training["profile"] == "demo"
    for run in ("margin/s0", "margin/s1", "random/s0", "random/s1"):
        assert Project.open(tmp_path / "demo" / "compare" / run).rounds() == [0, 1, 2]
    assert (tmp_path / "demo" / "compare" / "report" / "learning_curve.png").is_file()
    again = _run("synthetic_demo.sh", tmp_path / "demo", cwd=tmp_path, **tiny)  # a rerun skips what is done
    assert "% of full supervision with" in again.stdout


def test_prepare_folder(tmp_path):
    raw = tmp_path / "scans"
    rng = np.random.default_rng(0)
    for name in ("tile_a", "tile_b"):
        n = 800
        write_ply(raw / f"{name}.ply", Scene(name=name, xyz=rng.random((n, 3)) * 20,
                                              label=rng.choice([2, 5, 6], n), intensity=rng.random(n)))
    classes = tmp_path / "classes.yaml"
    classes.write_text("classes: [ground, vegetation, building]\nids: {2: ground, 5: vegetation, 6: building}\n")
    _run("prepare_folder.sh", raw, classes, tmp_path / "proj", cwd=tmp_path, CELL="5")
    project = Project.open(tmp_path / "proj")
    assert project.config.classes == ["ground", "vegetation", "building"]
    assert project.config.channels == ["intensity"]
    assert project.config.regions.params == {"cell": 5.0}


def test_compare_methods(tmp_path):
    tiny = dict(METHODS="random,margin", SEEDS="2", SCENES="3", POINTS="2000", ROUNDS="1", STEPS="2",
                FINETUNE_STEPS="2", FULL_STEPS="2",
                CR="0.125", DEVICE="cpu", SEED_BUDGET="10%", BUDGET="8%")
    done = _run("compare_methods.sh", tmp_path / "cmp", cwd=tmp_path, **tiny)
    assert "margin" in done.stdout and "random" in done.stdout
    assert (tmp_path / "cmp" / "compare" / "report" / "learning_curve.png").is_file()
    for run in ("random/s0", "margin/s1"):
        assert Project.open(tmp_path / "cmp" / "compare" / run).rounds() == [0, 1]
    seeds = [(tmp_path / "cmp" / "compare" / m / "s0" / "rounds" / "r000" / "labels" / "room_000.npz").read_bytes()
             for m in ("random", "margin")]
    assert seeds[0] == seeds[1]  # the same seed set for every method of a seed
