"""Importers and readers on the real samples in ``../shared/data`` (see its README)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from pcal_cli.data.datasets.folder import open_folder
from pcal_cli.data.datasets.s3dis import open_s3dis
from pcal_cli.data.datasets.scannet import open_scannet
from pcal_cli.data.datasets.semantickitti import open_semantickitti
from pcal_cli.data.datasets.sensaturban import open_sensaturban
from pcal_cli.data.readers import read_kitti_bin, read_points_bin

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.exists(), reason=f"shared sample data not found at {DATA}")


def histogram(labels: np.ndarray) -> dict[int, int]:
    ids, counts = np.unique(labels, return_counts=True)
    return dict(zip(ids.tolist(), counts.tolist()))


def present(labels: np.ndarray) -> set[int]:
    return set(np.unique(labels[labels >= 0]).tolist())


def test_scannet_preprocessed_scans():
    data = open_scannet(DATA / "scannet")
    assert [(s.split, s.name) for s in data.scenes] == [("train", "scene0000_00"), ("train", "scene0000_01")]
    expected = {
        "scene0000_00": (81369, 21917, {0, 1, 2, 3, 5, 6, 7, 8, 11, 12, 13, 14, 16, 17, 19}),
        "scene0000_01": (80583, 17369, {0, 1, 2, 3, 5, 7, 8, 11, 12, 13, 14, 16, 17, 19}),
    }
    for item in data.scenes:
        scene = item.load()
        points, ignored, classes = expected[item.name]
        raw = np.load(DATA / "scannet" / f"{item.name}_sem_label_all.npy")
        assert len(scene) == points == len(raw)
        assert scene.rgb is not None and scene.rgb.dtype == np.uint8
        counts = histogram(scene.label)
        assert present(scene.label) == classes and counts[-1] == ignored
        assert sum(counts.values()) == points
        # ignored = unannotated (0) + NYU40 ids outside the 20 benchmark classes
        assert ignored == int(np.count_nonzero(~np.isin(raw, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24,
                                                              28, 33, 34, 36, 39])))
    assert data.notes == []


def test_semantickitti_frame():
    data = open_semantickitti(DATA / "semantickitti")
    assert [(s.split, s.name) for s in data.scenes] == [("train", "00_000000")]
    scene = data.scenes[0].load()
    assert len(scene) == 124668 and scene.intensity is not None and scene.rgb is None
    counts = histogram(scene.label)
    assert present(scene.label) == {0, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18}
    assert counts[-1] == 4886 and sum(counts.values()) == 124668
    raw = read_kitti_bin(DATA / "semantickitti/sequences/00/velodyne/000000.bin",
                         DATA / "semantickitti/sequences/00/labels/000000.label")
    assert set(np.unique(raw.label).tolist()) == {0, 1, 10, 40, 44, 48, 50, 51, 52, 60, 70, 71, 72, 80, 81, 99, 255}
    assert counts[7] == int(np.count_nonzero(raw.label == 255))  # moving-motorcyclist -> motorcyclist


IGN_CLASSES = {
    "classes": ["ground", "low vegetation", "vegetation", "building", "structure"],
    "ids": {2: "ground", 3: "low vegetation", 4: "vegetation", 5: "vegetation", 6: "building", 64: "structure"},
    "ignore_ids": [1, 9, 17, 65, 66, 67],
}
IGN_TILES = {  # tile -> (points, raw classification ids present)
    "test_data_77050_627755_LA93_IGN69": (73355, {1, 2, 3, 4, 5, 6}),
    "test_data_77050_627760_LA93_IGN69": (56035, {1, 2, 3, 4, 5, 6, 64}),
    "test_data_77055_627755_LA93_IGN69": (72770, {1, 2, 3, 4, 5, 6, 64}),
    "test_data_77055_627760_LA93_IGN69": (60653, {1, 2, 3, 4, 5, 6}),
}


def test_ign_laz_tiles_through_folder(tmp_path):
    laspy = pytest.importorskip("laspy", reason="laspy[lazrs] is needed to read LAZ")
    class_file = tmp_path / "ign.yaml"
    class_file.write_text(yaml.safe_dump(IGN_CLASSES))
    data = open_folder(DATA / "aerial_ign", classes=class_file)
    assert data.spec.channels == ("intensity",)  # RGB fields exist but are all zero in these tiles
    assert data.spec.indoor is False
    assert [s.name for s in data.scenes] == sorted(IGN_TILES)
    for item in data.scenes:
        path = DATA / "aerial_ign" / f"{item.name}.laz"
        points, raw_ids = IGN_TILES[item.name]
        with laspy.open(str(path)) as reader:
            assert reader.header.point_count == points
        las = laspy.read(str(path))
        scene = item.load()
        assert len(scene) == points
        assert set(np.unique(np.asarray(las.classification)).tolist()) == raw_ids
        expected = {0, 1, 2, 3} | ({4} if 64 in raw_ids else set())
        counts = histogram(scene.label)
        assert present(scene.label) == expected and sum(counts.values()) == points
        assert counts[-1] == int(np.count_nonzero(np.asarray(las.classification) == 1))
        assert counts[2] == int(np.count_nonzero(np.isin(np.asarray(las.classification), [4, 5])))
        # coordinates: Lambert-93 metres, exact to the file's 1 cm scale through the offset
        xyz = np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], axis=1)
        np.testing.assert_allclose(scene.xyz.astype(np.float64) + scene.offset, xyz, atol=2e-3, rtol=0)
        assert scene.offset[0] > 7e5 and scene.offset[1] > 6e6


def test_sensaturban_block():
    data = open_sensaturban(DATA / "sensaturban")
    assert [(s.split, s.name) for s in data.scenes] == [("train", "birmingham_block_0_0002")]
    scene = data.scenes[0].load()
    assert len(scene) == 60095 and scene.rgb is not None
    assert histogram(scene.label) == {0: 1634, 2: 3850, 3: 775, 5: 2919, 7: 49287, 8: 708, 9: 922}
    assert sum(histogram(scene.label).values()) == 60095
    raw = read_points_bin(DATA / "sensaturban/points/birmingham_block_0_0002.bin")
    np.testing.assert_array_equal(raw.xyz, scene.xyz)


def test_s3dis_tiny_mmdet3d_fixture():
    data = open_s3dis(DATA / "s3dis_tiny")  # test area 5 is absent, noted (prepare notes the empty splits)
    assert [(s.split, s.name) for s in data.scenes] == [("train", "Area_1_office_2")]
    assert data.notes == ["no scans of Area_5 (the test area) were found"]
    scene = data.scenes[0].load()
    counts = histogram(scene.label)
    assert len(scene) == 100 and sum(counts.values()) == 100
    assert present(scene.label) == set(range(13)) - {11}  # 12 classes: no board
    assert counts == {0: 19, 1: 14, 2: 39, 3: 2, 4: 2, 5: 2, 6: 6, 7: 4, 8: 2, 9: 2, 10: 3, 12: 5}
    assert scene.rgb.max() > 1  # colours are 0..255 in this format


def test_ign_laz_tiles_with_the_asprs_table():
    laspy = pytest.importorskip("laspy", reason="laspy[lazrs] is needed to read LAZ")
    from pcal_cli.data.classes import ASPRS_CLASSES
    from pcal_cli.errors import PcalError

    data = open_folder(DATA / "aerial_ign", classes="asprs")  # point format 8: rgb and nir declared, all zero
    assert data.spec.classes == ASPRS_CLASSES and data.spec.channels == ("intensity",) and data.notes == []
    with pytest.raises(PcalError, match=r"label ids outside the class list: 64 \(not ASPRS standard classes: "
                                        r"pass --ignore-ids 64 to ignore them"):
        data.scenes[1].load()  # 77050_627760 holds IGN's code 64 (permanent structure)
    data = open_folder(DATA / "aerial_ign", classes="asprs", ignore_ids="64-67")
    for item in data.scenes:
        raw = np.asarray(laspy.read(str(DATA / "aerial_ign" / f"{item.name}.laz")).classification).astype(int)
        scene = item.load()
        assert scene.nir is None and scene.rgb is None
        for code, index in ((2, 0), (3, 1), (4, 2), (5, 3), (6, 4)):
            assert int((scene.label == index).sum()) == int((raw == code).sum())
        assert int((scene.label == -1).sum()) == int(np.isin(raw, [1, 64]).sum())
