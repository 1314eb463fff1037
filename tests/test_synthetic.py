"""The embedded synthetic dataset: determinism, sizes, classes, splits, argument checks, geometry."""

from __future__ import annotations

import numpy as np
import pytest

from pcal_cli.data.classes import S3DIS_CLASSES, S3DIS_COLORS
from pcal_cli.data.datasets.synthetic import open_synthetic
from pcal_cli.data.synthetic import synthetic_room
from pcal_cli.errors import PcalError

CLASS = {name: i for i, name in enumerate(S3DIS_CLASSES)}


@pytest.fixture(scope="module")
def default_rooms():
    dataset = open_synthetic()
    return [scene.load() for scene in dataset.scenes]


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.xyz, b.xyz)
    np.testing.assert_array_equal(a.label, b.label)
    np.testing.assert_array_equal(a.rgb, b.rgb)


def test_same_arguments_same_room():
    _same(synthetic_room(3, 5000, "room_002"), synthetic_room(3, 5000, "room_002"))


def test_seed_and_name_change_the_room():
    base = synthetic_room(0, 5000, "room_000")
    assert not np.array_equal(base.xyz, synthetic_room(1, 5000, "room_000").xyz)
    assert not np.array_equal(base.xyz, synthetic_room(0, 5000, "room_001").xyz)


def test_more_scenes_keep_earlier_rooms_identical():
    small = open_synthetic(seed=4, scenes=3, points=3000)
    large = open_synthetic(seed=4, scenes=7, points=3000)
    for a, b in zip(small.scenes, large.scenes[:3]):
        assert a.name == b.name
        _same(a.load(), b.load())


@pytest.mark.parametrize("points", [100, 1234, 40000])
def test_exact_point_count_and_dtypes(points):
    scene = synthetic_room(0, points, "room_000")
    assert len(scene) == points
    assert scene.xyz.dtype == np.float32 and scene.xyz.shape == (points, 3)
    assert scene.rgb.dtype == np.uint8 and scene.rgb.shape == (points, 3)
    assert scene.label.dtype == np.int16
    assert scene.label.min() >= 0 and scene.label.max() < len(S3DIS_CLASSES)
    assert np.isfinite(scene.xyz).all()
    assert (scene.region == -1).all()


def test_every_class_in_default_dataset_and_most_in_every_room(default_rooms):
    assert [len(s) for s in default_rooms] == [40000] * 6
    present = np.stack([np.bincount(s.label, minlength=13) > 0 for s in default_rooms])
    assert present.any(axis=0).all(), [c for c, p in zip(S3DIS_CLASSES, present.any(axis=0)) if not p]
    assert (present.sum(axis=1) >= 9).all()
    always = ["ceiling", "floor", "wall", "window", "door", "table", "chair", "bookcase", "clutter"]
    assert present[:, [CLASS[c] for c in always]].all()


def test_split_and_spec():
    dataset = open_synthetic()
    assert [s.name for s in dataset.scenes] == [f"room_{i:03d}" for i in range(6)]
    assert [s.split for s in dataset.scenes] == ["train"] * 4 + ["test"] * 2
    spec = dataset.spec
    assert spec.classes == S3DIS_CLASSES and spec.colors == S3DIS_COLORS
    assert spec.indoor and spec.channels == ("rgb",) and spec.profile == "synthetic"
    assert dataset.notes == []
    assert [s.split for s in open_synthetic(scenes=1).scenes] == ["test"]
    assert [s.split for s in open_synthetic(scenes=4).scenes] == ["train"] * 2 + ["test"] * 2


def test_loaded_scene_carries_its_name():
    dataset = open_synthetic(scenes=2, points=500)
    assert [s.load().name for s in dataset.scenes] == ["room_000", "room_001"]


@pytest.mark.parametrize("kwargs", [
    {"scenes": 0}, {"scenes": -2}, {"points": 99}, {"points": 0}, {"seed": -1},
    {"scenes": 2.5}, {"points": "many"}, {"scenes": True},
])
def test_bad_arguments_raise_pcal_error(kwargs):
    with pytest.raises(PcalError):
        open_synthetic(**kwargs)


def test_bad_room_arguments_raise_pcal_error():
    with pytest.raises(PcalError):
        synthetic_room(0, 0, "x")
    with pytest.raises(PcalError):
        synthetic_room(-5, 100, "x")
    with pytest.raises(PcalError, match="layout"):
        synthetic_room(0, 100, "x", layout="open-plan")
    with pytest.raises(PcalError, match="--layout"):
        open_synthetic(layout="Typed")


def test_mixed_layout_is_the_default():
    _same(synthetic_room(2, 3000, "room_001"), synthetic_room(2, 3000, "room_001", layout="mixed"))


def test_typed_rooms_hold_different_classes():
    rooms = [scene.load() for scene in open_synthetic(seed=0, scenes=15, points=3000, layout="typed").scenes]
    _same(rooms[4], synthetic_room(0, 3000, "room_004", layout="typed"))
    assert not np.array_equal(rooms[4].xyz, synthetic_room(0, 3000, "room_004").xyz)
    present = np.stack([np.bincount(s.label, minlength=13) > 0 for s in rooms])
    shell = [CLASS[c] for c in ("ceiling", "floor", "wall")]
    assert present[:, shell].all()
    # every other class is missing from some rooms, and most are held by some
    furniture = [CLASS[c] for c in ("door", "window", "table", "chair", "sofa", "bookcase", "board")]
    assert not present[:, furniture].all(axis=0).any()
    assert present[:, furniture].any(axis=0).sum() >= 6
    assert len({tuple(row) for row in present}) >= 8
    counts = present.sum(axis=1)
    assert counts.min() <= 6 and counts.max() >= 10, counts


def test_plausible_geometry(default_rooms):
    for scene in default_rooms:
        z, label = scene.xyz[:, 2], scene.label
        mean_z = np.array([z[label == c].mean() if (label == c).any() else np.nan for c in range(13)])
        floor, ceiling = mean_z[CLASS["floor"]], mean_z[CLASS["ceiling"]]
        others = np.delete(mean_z, [CLASS["floor"], CLASS["ceiling"]])
        assert abs(floor - z.min()) < 0.05 and floor < np.nanmin(others)
        assert abs(ceiling - z.max()) < 0.05 and ceiling > np.nanmax(others)
        # the floor and ceiling are flat, up to the simulated sensor noise
        assert z[label == CLASS["floor"]].std() < 0.01
        extent = scene.xyz.max(axis=0) - scene.xyz.min(axis=0)
        assert 3.5 < extent[0] < 9.8 and 2.5 < extent[1] < 7.8 and 2.5 < extent[2] < 3.5
        # tables stand at table height, chairs below them
        assert 0.3 < np.median(z[label == CLASS["table"]]) < 0.8
        assert np.median(z[label == CLASS["chair"]]) < 0.8


def test_doors_and_windows_differ_from_walls_in_colour(default_rooms):
    rgb = np.concatenate([s.rgb for s in default_rooms]).astype(float)
    label = np.concatenate([s.label for s in default_rooms])
    wall = rgb[label == CLASS["wall"]].mean(axis=0)
    for name in ("door", "window"):
        assert np.abs(rgb[label == CLASS[name]].mean(axis=0) - wall).sum() > 40


def test_item_as_wide_as_its_area_does_not_crash():
    # room_137 of seed 0 draws a floor-clutter item exactly as wide as its free square; rounding
    # once made the centre's range negative and numpy raised ValueError
    scene = synthetic_room(0, 2000, "room_137")
    assert len(scene) == 2000 and (scene.label == CLASS["clutter"]).any()
