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


# -- hold-out areas, split notes, channels ----------------------------------------------------------------


def test_parse_holdout_forms_and_errors():
    from pcal_cli.data.holdout import Holdout, parse_holdout
    from pcal_cli.errors import PcalError

    assert parse_holdout("0.25") == Holdout("0.25", 0.25)
    assert parse_holdout(" 25% ") == Holdout("25%", 0.25)
    assert parse_holdout("x>650") == Holdout("x>650", 650.0, "x", True)
    assert parse_holdout("Y < -1.5e2") == Holdout("Y < -1.5e2", -150.0, "y", False)
    for bad in ("0", "1", "100%", "-0.2", "z>3", "x>=3", "x>", "half", "", "x>1e999"):
        with pytest.raises(PcalError, match="--holdout-area"):
            parse_holdout(bad)


def test_holdout_mask_fraction_and_threshold():
    from pcal_cli.data.holdout import holdout_mask, parse_holdout

    xyz = np.array([[0, 0, 0], [10, 1, 0], [7.4, 2, 5], [7.6, 3, 0], [2, 4, 9]], dtype=np.float32)  # x is longer
    assert holdout_mask(xyz, np.zeros(3), parse_holdout("0.25")).tolist() == [False, True, False, True, False]
    tall = xyz[:, [1, 0, 2]]  # the same points with x and y swapped: the cut follows y
    assert holdout_mask(tall, np.zeros(3), parse_holdout("25%")).tolist() == [False, True, False, True, False]
    offset = np.array([770500.0, 6277550.0, 0.0])  # thresholds are on absolute coordinates
    assert holdout_mask(xyz, offset, parse_holdout("x>770507.5")).tolist() == [False, True, False, True, False]
    assert holdout_mask(xyz, offset, parse_holdout("y<6277552")).tolist() == [True, True, False, False, False]
    assert holdout_mask(np.zeros((0, 3), np.float32), np.zeros(3), parse_holdout("0.5")).shape == (0,)


def test_holdout_area_cuts_each_training_scene_in_two(pcal, tmp_path):
    raw = tmp_path / "raw"
    (raw / "train").mkdir(parents=True)
    (raw / "test").mkdir()
    rng = np.random.default_rng(4)
    xyz = np.column_stack([rng.random(800) * 40, rng.random(800) * 10, rng.random(800)])
    write_ply(raw / "train" / "tile.ply", Scene("tile", xyz, label=(xyz[:, 0] > 20).astype(int),
                                                 rgb=rng.integers(0, 256, (800, 3))))
    _write_scene(raw / "test" / "other.ply", seed=5)
    proj = tmp_path / "proj"
    result = pcal("prepare", "folder", raw, "-p", proj, "--classes", "a,b,c", "--holdout-area", "0.25",
                  "--regions", "cells", "--cell", "5")
    assert result.code == 0, result.err
    project = Project.open(proj)
    assert project.config.splits == {"train": ["tile_train"], "test": ["tile_test", "other"]}  # scenes in reading order
    assert project.config.source["holdout_area"] == "0.25"
    train, test = read_ply(project.scene_path("train", "tile_train")), read_ply(project.scene_path("test", "tile_test"))
    cut = xyz[:, 0].min() + 0.75 * (xyz[:, 0].max() - xyz[:, 0].min())
    assert len(train) + len(test) == 800 and len(test) == int((xyz[:, 0].astype(np.float32) > cut).sum())
    assert train.xyz[:, 0].max() <= cut < test.xyz[:, 0].min()
    # regions are built per output scene: each part numbers its own cells from 0
    assert train.region.min() == 0 and test.region.min() == 0
    ref = read_ply(project.scene_path("test", "other"))
    assert (ref.region >= 0).all()


def test_holdout_threshold_on_a_whole_tile_notes_it(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    _write_scene(raw / "a.ply", seed=1)  # x in 0..3
    result = prepare_project("folder", raw, tmp_path / "p", {"classes": "x,y,z"},
                             PrepareOptions(regions="none", holdout_area="x>5"))
    assert result.config.splits == {"train": ["a_train"]}
    assert "a: every point is on the train side of --holdout-area x>5; only a_train is written" in result.notes
    assert any("every scene is in train" in note for note in result.notes)


def test_holdout_name_clash_and_bad_spec_leave_nothing(pcal, tmp_path):
    raw = tmp_path / "raw"
    (raw / "train").mkdir(parents=True)
    (raw / "val").mkdir()
    _write_scene(raw / "train" / "a.ply", seed=1)
    _write_scene(raw / "val" / "a_test.ply", seed=2)
    proj = tmp_path / "proj"
    _fails_cleanly(pcal("prepare", "folder", raw, "-p", proj, "--classes", "x,y,z", "--holdout-area", "0.5"),
                   proj, "scene name 'a_test' appears twice")
    _fails_cleanly(pcal("prepare", "folder", raw, "-p", proj, "--classes", "x,y,z", "--holdout-area", "x>=2"),
                   proj, "--holdout-area")


def test_every_importer_notes_an_empty_evaluation_split_the_same_way(tmp_path):
    from pcal_cli.prepare import split_notes

    train_only = ("every scene is in train (the val and test splits are empty): rounds train but are never "
                  "evaluated; hold scenes out with --split-file, or part of each scene with --holdout-area")
    assert split_notes({"train": ["a"]}) == [train_only]
    assert split_notes({"train": ["a"], "val": ["b"]}) == split_notes({"train": ["a"], "test": ["b"]}) == []
    assert split_notes({"test": ["b"]}) == ["no training scenes: this project can be evaluated but not trained"]
    raw = tmp_path / "raw"
    raw.mkdir()
    _write_scene(raw / "a.ply")
    result = prepare_project("folder", raw, tmp_path / "p", {"classes": "x,y,z"}, PrepareOptions(regions="none"))
    assert result.notes == [train_only]
    split = tmp_path / "split.txt"
    split.write_text("a test\n")
    result = prepare_project("folder", raw, tmp_path / "q", {"classes": "x,y,z", "split_file": split},
                             PrepareOptions(regions="none"))
    assert result.config.splits == {"test": ["a"]} and result.notes[-1].startswith("no training scenes")


def test_nir_reaches_the_scene_plys_and_pcal_yaml(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(2)
    for name in ("a", "b"):
        write_ply(raw / f"{name}.ply", Scene(name, rng.random((50, 3)), label=rng.integers(0, 2, 50),
                                             intensity=rng.random(50), nir=rng.random(50) * 900))
    result = prepare_project("folder", raw, tmp_path / "p", {"classes": "x,y"}, PrepareOptions(regions="none"))
    assert result.config.channels == ["intensity", "nir"]
    back = read_ply(result.project.scene_path("train", "a"))
    np.testing.assert_array_equal(back.nir, read_ply(raw / "a.ply").nir)
    fields = [p.name for p in PlyData.read(str(result.project.scene_path("train", "a")))["vertex"].properties]
    assert fields == ["x", "y", "z", "intensity", "nir", "label", "region"]
    older = prepare_project("folder", raw, tmp_path / "q", {"classes": "x,y", "channels": "intensity"},
                            PrepareOptions(regions="none"))
    assert older.config.channels == ["intensity"] and read_ply(older.project.scene_path("train", "a")).nir is None


def test_a_single_scannet_scene_is_noted_as_train_only(tmp_path):
    raw = tmp_path / "scannet"
    raw.mkdir()
    rng = np.random.default_rng(0)
    np.save(raw / "scene0000_00_vert_all.npy", np.column_stack([rng.random((60, 3)), rng.integers(0, 256, (60, 3))])
            .astype(np.float32))
    np.save(raw / "scene0000_00_sem_label_all.npy", rng.integers(0, 5, 60).astype(np.uint32))
    result = prepare_project("scannet", raw, tmp_path / "p", {}, PrepareOptions(regions="none"))
    assert result.config.splits == {"train": ["scene0000_00"]}
    assert result.notes == ["every scene is in train (the val and test splits are empty): rounds train but are never "
                            "evaluated; hold scenes out with --split-file, or part of each scene with --holdout-area"]


def test_nir_is_stored_only_when_it_is_a_channel(tmp_path):
    """A dataset whose channels leave nir out (SensatUrban: rgb) writes the scene PLYs it always did."""
    raw = tmp_path / "sensat"
    raw.mkdir()
    rng = np.random.default_rng(1)
    write_ply(raw / "cambridge_block_3.ply", Scene("b", rng.random((40, 3)), label=rng.integers(0, 13, 40),
                                                   rgb=rng.integers(0, 256, (40, 3)), nir=rng.random(40)))
    result = prepare_project("sensaturban", raw, tmp_path / "p", {}, PrepareOptions(regions="none"))
    path = result.project.scene_path("train", "cambridge_block_3")
    assert [p.name for p in PlyData.read(str(path))["vertex"].properties] == [
        "x", "y", "z", "red", "green", "blue", "label", "region"]


@needs_data
def test_real_semantickitti_split_file_and_holdout_through_the_cli(pcal, tmp_path):
    split = tmp_path / "split.yaml"
    split.write_text("val: [00_000000]\n")  # read as text: 00_000000 is not the number 0
    proj = tmp_path / "kitti"
    result = pcal("prepare", "semantickitti", SHARED_DATA / "semantickitti", "-p", proj, "--split-file", split,
                  "--regions", "none")
    assert result.code == 0, result.err
    assert Project.open(proj).config.splits == {"val": ["00_000000"]}
    assert "no training scenes" in result.err
    cut = tmp_path / "cut"
    result = pcal("prepare", "semantickitti", SHARED_DATA / "semantickitti", "-p", cut, "--holdout-area", "x>20",
                  "--regions", "none")
    assert result.code == 0, result.err
    assert "every scene is in train" not in result.err
    project = Project.open(cut)
    assert project.config.splits == {"train": ["00_000000_train"], "test": ["00_000000_test"]}
    test = read_ply(project.scene_path("test", "00_000000_test"))
    assert test.xyz[:, 0].min() > 20 and len(test) + len(read_ply(project.scene_path("train", "00_000000_train"))) \
        == 124_668
