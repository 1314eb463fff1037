import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from pcal_cli import __version__
from pcal_cli.data.ply import read_ply
from pcal_cli.data.synthetic import synthetic_room
from pcal_cli.geometry.grid import grid_subsample
from pcal_cli.project import Project

from conftest import tree_bytes


def test_version_and_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "pcal_cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.strip() == f"pcal {__version__}"


def test_help_lists_every_command(pcal):
    result = pcal("--help")
    assert result.code == 0
    for name in ("prepare", "seed", "train", "score", "select", "label", "evaluate", "round", "report"):
        assert name in result.out


@pytest.mark.parametrize("command", ["prepare", "seed", "train", "evaluate", "score", "select", "label",
                                     "round", "report"])
def test_every_command_explains_itself(pcal, command):
    result = pcal(command, "--help")
    assert result.code == 0
    assert "Usage: pcal " + command in " ".join(result.out.split())
    assert "--project" in result.out


def test_help_prose_is_reflowed_and_examples_kept():
    from pcal_cli.cli import app, reflow

    text = "First line.\n\nA paragraph wrapped\nin the source.\n\nExample:\n\n  pcal a -p x\n  pcal b\n\n- one\n- two"
    assert reflow(text) == ("First line.\n\nA paragraph wrapped in the source.\n\nExample:\n\n  pcal a -p x\n"
                            "  pcal b\n\n- one\n- two")
    assert reflow(None) is None
    compare = next(info for info in app.registered_commands if info.name == "compare")
    assert "by every method" in compare.help and "shared by\nevery" not in compare.help


def test_prepare_synthetic_writes_scenes_and_config(pcal, tmp_path):
    proj = tmp_path / "demo"
    result = pcal("prepare", "synthetic", "-p", proj, "--scenes", "3", "--points", "3000", "--seed", "0")
    assert result.code == 0, result.err
    assert "class histogram" in result.out and "train" in result.out
    project = Project.open(proj)
    config = project.config
    assert config.dataset == "synthetic" and len(config.classes) == 13
    assert config.splits == {"train": ["room_000", "room_001"], "test": ["room_002"]}
    assert (proj / "ledger.jsonl").read_text() == "" and (proj / "rounds").is_dir()
    scene = read_ply(project.scene_path("train", "room_000"))
    assert len(scene) == 3000 and scene.rgb is not None
    assert (scene.region >= 0).all() and (scene.label >= 0).all()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_prepare_is_byte_identical_when_repeated(pcal, tmp_path):
    args = ("prepare", "synthetic", "--scenes", "2", "--points", "2000", "--seed", "3")
    assert pcal(*args, "-p", tmp_path / "a").code == 0
    assert pcal(*args, "-p", tmp_path / "b").code == 0
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")


def test_project_from_environment_and_root_option(pcal, tmp_path, monkeypatch):
    monkeypatch.setenv("PCAL_PROJECT", str(tmp_path / "env"))
    assert pcal("prepare", "synthetic", "--scenes", "1", "--points", "500").code == 0
    assert (tmp_path / "env" / "pcal.yaml").is_file()
    monkeypatch.delenv("PCAL_PROJECT")
    assert pcal("-p", tmp_path / "root", "prepare", "synthetic", "--scenes", "1", "--points", "500").code == 0
    assert (tmp_path / "root" / "pcal.yaml").is_file()


def test_grid_and_region_options(pcal, tmp_path):
    proj = tmp_path / "cells"
    result = pcal("prepare", "synthetic", "-p", proj, "--scenes", "1", "--points", "4000",
                  "--grid", "0.1", "--regions", "cells", "--cell", "0.5", "--voxel-size", "0.1")
    assert result.code == 0, result.err
    config = Project.open(proj).config
    assert config.grid == 0.1 and config.voxel_size == 0.1
    assert config.regions.kind == "cells" and config.regions.params == {"cell": 0.5}
    scene = read_ply(proj / "scenes" / "test" / "room_000.ply")
    assert len(scene) < 4000
    original = synthetic_room(seed=0, points=4000, name="room_000")  # what prepare generated
    np.testing.assert_array_equal(scene.xyz, original.xyz[grid_subsample(original.xyz, 0.1)])


def _assert_clean_failure(result, tmp_path, fragment):
    assert result.code == 2, result.err
    assert fragment in result.err
    assert "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("prepare", "nosuch", "raw"), "unknown dataset"),
        (("prepare", "s3dis", "missing_folder"), "no such folder"),
        (("prepare", "s3dis"), "needs the RAW"),
        (("prepare", "synthetic", "--frame-step", "2"), "does not apply"),
        (("prepare", "synthetic", "--regions", "blobs"), "unknown region kind"),
        (("prepare", "synthetic", "--regions", "cells", "--chunks", "3"), "does not apply"),
        (("prepare", "synthetic", "--grid", "-1"), "--grid"),
        (("prepare", "synthetic", "--scenes", "0"), "scenes"),
    ],
)
def test_bad_arguments_fail_cleanly(pcal, tmp_path, args, fragment):
    os.chdir(tmp_path)
    result = pcal(*args, "-p", tmp_path / "proj")
    _assert_clean_failure(result, tmp_path, fragment)
    assert not (tmp_path / "proj").exists()


def test_no_project_given(pcal, tmp_path, monkeypatch):
    monkeypatch.delenv("PCAL_PROJECT", raising=False)
    _assert_clean_failure(pcal("prepare", "synthetic"), tmp_path, "no project given")


def test_existing_projects_are_protected(pcal, tmp_path):
    proj = tmp_path / "p"
    small = ("prepare", "synthetic", "-p", proj, "--scenes", "1", "--points", "500")
    assert pcal(*small).code == 0
    _assert_clean_failure(pcal(*small), tmp_path, "--force")
    assert pcal(*small, "--force", "--seed", "1").code == 0
    assert Project.open(proj).config.source["options"]["seed"] == 1
    (proj / "rounds" / "r000").mkdir()
    _assert_clean_failure(pcal(*small, "--force"), tmp_path, "never deletes labels")
    assert (proj / "rounds" / "r000").is_dir()

    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    _assert_clean_failure(pcal("prepare", "synthetic", "-p", foreign, "--force"), tmp_path, "not a pcal project")
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_empty_folder_is_refused(pcal, tmp_path):
    (tmp_path / "raw").mkdir()
    result = pcal("prepare", "folder", tmp_path / "raw", "-p", tmp_path / "proj", "--classes", "a,b")
    _assert_clean_failure(result, tmp_path, "raw")
    assert not (tmp_path / "proj").exists()


def test_config_written_by_prepare_is_safe_yaml(pcal, tmp_path):
    assert pcal("prepare", "synthetic", "-p", tmp_path / "p", "--scenes", "1", "--points", "500").code == 0
    data = yaml.safe_load((tmp_path / "p" / "pcal.yaml").read_text())
    assert data["voxel_size"] == 0.05 and data["indoor"] is True and data["ignore"] == -1
    assert data["regions"]["kind"] == "supervoxel"
    assert data["regions"]["params"] == {"seed_resolution": 1.0, "voxel_resolution": 0.1, "min_size": 100}
