"""``prepare`` end to end: bad input through the CLI, and the real samples in ../shared/data."""

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from pcal_cli.data.ply import read_ply, write_ply
from pcal_cli.data.scene import Scene
from pcal_cli.prepare import PrepareOptions, prepare_project
from pcal_cli.project import Project

from conftest import SHARED_DATA


def _write_scene(path, n=400, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    scene = Scene(name=path.stem, xyz=rng.random((n, 3)) * 3, rgb=rng.integers(0, 256, (n, 3)),
                  label=rng.integers(0, 3, n) if labels is None else labels)
    write_ply(path, scene)
    return scene


def _fails_cleanly(result, proj, fragment):
    assert result.code == 2, result.err
    assert fragment in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not proj.exists()
    assert not [p for p in proj.parent.iterdir() if p.name.endswith(".tmp")]


def test_folder_of_plys_prepares(pcal, tmp_path):
    raw = tmp_path / "raw"
    (raw / "train").mkdir(parents=True)
    (raw / "test").mkdir()
    a = _write_scene(raw / "train" / "a.ply", seed=1)
    _write_scene(raw / "test" / "b.ply", seed=2)
    proj = tmp_path / "proj"
    result = pcal("prepare", "folder", raw, "-p", proj, "--classes", "x,y,z", "--regions", "kmeans", "--chunks", "4")
    assert result.code == 0, result.err
    project = Project.open(proj)
    assert project.config.splits == {"train": ["a"], "test": ["b"]}
    back = read_ply(project.scene_path("train", "a"))
    np.testing.assert_array_equal(back.label, a.label)
    assert sorted(np.unique(back.region).tolist()) == [0, 1, 2, 3]


def test_truncated_ply_fails_cleanly(pcal, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    _write_scene(raw / "a.ply")
    _write_scene(raw / "b.ply", n=2000)
    blob = (raw / "b.ply").read_bytes()
    (raw / "b.ply").write_bytes(blob[: len(blob) - 5000])
    proj = tmp_path / "proj"
    _fails_cleanly(pcal("prepare", "folder", raw, "-p", proj, "--classes", "x,y,z"), proj, "b.ply")


def test_ply_without_xyz_fails_cleanly(pcal, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    data = np.zeros(10, dtype=[("u", "f4"), ("v", "f4")])
    PlyData([PlyElement.describe(data, "vertex")]).write(str(raw / "a.ply"))
    proj = tmp_path / "proj"
    _fails_cleanly(pcal("prepare", "folder", raw, "-p", proj, "--classes", "x,y"), proj, "no x/y/z")


def test_labels_outside_the_class_list_fail_cleanly(pcal, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    _write_scene(raw / "a.ply", labels=np.full(400, 7))
    proj = tmp_path / "proj"
    _fails_cleanly(pcal("prepare", "folder", raw, "-p", proj, "--classes", "x,y,z"), proj, "outside the class list")


def test_nan_points_are_dropped_with_a_count(pcal, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    xyz = rng.random((500, 3)).astype(np.float32)
    xyz[[3, 10, 99], 1] = np.nan
    xyz[42, 2] = np.inf
    data = np.zeros(500, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("label", "i2")])
    for i, axis in enumerate("xyz"):
        data[axis] = xyz[:, i]
    data["label"] = rng.integers(0, 2, 500)
    PlyData([PlyElement.describe(data, "vertex")]).write(str(raw / "a.ply"))
    proj = tmp_path / "proj"
    result = pcal("prepare", "folder", raw, "-p", proj, "--classes", "x,y", "--regions", "cells")
    assert result.code == 0, result.err
    assert "dropped 4 point(s) with NaN or infinite coordinates" in result.err
    scene = read_ply(proj / "scenes" / "train" / "a.ply")
    assert len(scene) == 496 and np.isfinite(scene.xyz).all()
    keep = np.isfinite(xyz).all(axis=1)
    np.testing.assert_array_equal(scene.label, data["label"][keep])


def test_library_call_reports_progress(tmp_path):
    seen = []
    result = prepare_project("synthetic", None, tmp_path / "p", {"scenes": 2, "points": 600},
                             PrepareOptions(regions="none"), on_scene=lambda d, t, n: seen.append((d, t, n)))
    assert seen == [(1, 2, "room_000"), (2, 2, "room_001")]
    assert result.splits["train"].points == 600 and result.splits["test"].points == 600
    assert (read_ply(result.project.scene_path("test", "room_001")).region == -1).all()


needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real samples not found at {SHARED_DATA}")


def _histogram(project, split):
    total = np.zeros(project.config.num_classes, dtype=np.int64)
    points = 0
    for path in project.scene_files(split):
        scene = read_ply(path)
        points += len(scene)
        total += np.bincount(scene.label[scene.label >= 0], minlength=project.config.num_classes)
    return points, total


@needs_data
def test_real_scannet_through_prepare(pcal, tmp_path):
    proj = tmp_path / "scannet"
    result = pcal("prepare", "scannet", SHARED_DATA / "scannet", "-p", proj)
    assert result.code == 0, result.err
    project = Project.open(proj)
    names = {n for s in project.config.splits.values() for n in s}
    assert names == {"scene0000_00", "scene0000_01"}
    split = next(iter(project.config.splits))
    assert len(project.config.splits[split]) == 2  # two scans of one room stay together
    points, hist = _histogram(project, split)
    assert points == 81_369 + 80_583
    raw_labels = np.concatenate([np.load(SHARED_DATA / "scannet" / f"scene0000_0{i}_sem_label_all.npy")
                                 for i in (0, 1)])
    nyu40 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
    expected = np.array([(raw_labels == i).sum() for i in nyu40])
    np.testing.assert_array_equal(hist, expected)


@needs_data
def test_real_semantickitti_through_prepare(pcal, tmp_path):
    proj = tmp_path / "kitti"
    result = pcal("prepare", "semantickitti", SHARED_DATA / "semantickitti", "-p", proj, "--regions", "cells")
    assert result.code == 0, result.err
    project = Project.open(proj)
    assert project.config.splits == {"train": ["00_000000"]}
    assert project.config.channels == ["intensity"] and project.config.indoor is False
    assert project.config.regions.params == {"cell": 2.0}
    points, hist = _histogram(project, "train")
    assert points == 124_668
    assert np.flatnonzero(hist).tolist() == [0, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18]
    assert hist.sum() == 124_668 - 4_886


@needs_data
def test_real_aerial_laz_through_prepare(pcal, tmp_path):
    pytest.importorskip("laspy", reason="laspy is needed to read LAZ (pip install 'pcal[las]')")
    classes = tmp_path / "classes.yaml"
    classes.write_text("classes: [ground, vegetation, building, other]\n"
                       "ids: {2: ground, 3: vegetation, 4: vegetation, 5: vegetation, 6: building, 64: other}\n"
                       "ignore_ids: [1]\n")
    proj = tmp_path / "ign"
    result = pcal("prepare", "folder", SHARED_DATA / "aerial_ign", "-p", proj, "--classes", classes,
                  "--regions", "supervoxel", "--seed-resolution", "10", "--voxel-resolution", "0.5")
    assert result.code == 0, result.err
    project = Project.open(proj)
    points, hist = _histogram(project, "train")
    assert points == 73_355 + 56_035 + 72_770 + 60_653
    assert hist[:3].min() > 0 and hist.sum() < points  # unclassified (1) is ignored
    scene = read_ply(project.scene_files("train")[0])
    assert scene.offset[0] > 7e5  # Lambert-93 coordinates kept through the offset


@needs_data
def test_real_sensaturban_through_prepare(pcal, tmp_path):
    proj = tmp_path / "sensat"
    result = pcal("prepare", "sensaturban", SHARED_DATA / "sensaturban", "-p", proj, "--regions", "cells")
    assert result.code == 0, result.err
    project = Project.open(proj)
    split = next(iter(project.config.splits))
    points, hist = _histogram(project, split)
    assert points == 60_095
    assert {k: int(v) for k, v in enumerate(hist) if v} == {0: 1634, 2: 3850, 3: 775, 5: 2919, 7: 49287,
                                                             8: 708, 9: 922}


def test_prepare_writes_the_training_profile_and_commands_use_it(tmp_path, pcal):
    from pcal_cli.project import Project
    from pcal_cli.training.profiles import PROFILES
    from pcal_cli.training.supervised import profile_options

    result = pcal("prepare", "synthetic", "-p", tmp_path / "p", "--scenes", "3", "--points", "500")
    assert result.code == 0, result.err
    project = Project.open(tmp_path / "p")
    assert project.config.training == PROFILES["synthetic"].to_config()
    assert project.config.voxel_size == PROFILES["synthetic"].voxel_size
    options = profile_options(project, {"cr": 0.125, "steps": None})
    assert options.cr == 0.125 and options.steps == PROFILES["synthetic"].train["steps"]
    assert options.finetune_steps == PROFILES["synthetic"].train["finetune_steps"]
    full = profile_options(project, {}, full=True)
    assert full.steps == PROFILES["synthetic"].train["full_steps"] and full.finetune_steps is None
    aerial = pcal("prepare", "synthetic", "-p", tmp_path / "q", "--scenes", "3", "--points", "500",
                  "--profile", "aerial")
    assert aerial.code == 0 and Project.open(tmp_path / "q").config.voxel_size == PROFILES["aerial"].voxel_size
    bad = pcal("prepare", "synthetic", "-p", tmp_path / "r", "--profile", "satellite")
    assert bad.code == 2 and "unknown training profile" in bad.err and not (tmp_path / "r").exists()
    config = (tmp_path / "p" / "pcal.yaml").read_text().replace("cr: 0.25", "cr: fast")
    assert "cr: fast" in config
    (tmp_path / "p" / "pcal.yaml").write_text(config)
    broken = pcal("train", "-p", tmp_path / "p", "--full")
    assert broken.code == 2 and "training option 'cr'" in broken.err
