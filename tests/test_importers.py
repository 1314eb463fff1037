"""Dataset importers on miniature raw datasets written in each official layout."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from plyfile import PlyData, PlyElement

from pcal_cli.data.datasets.folder import open_folder, read_split_file
from pcal_cli.data.datasets.s3dis import open_s3dis
from pcal_cli.data.datasets.scannet import default_split, open_scannet
from pcal_cli.data.datasets.semantickitti import open_semantickitti
from pcal_cli.data.datasets.sensaturban import open_sensaturban
from pcal_cli.data.ply import write_ply
from pcal_cli.data.readers import parse_number_rows, read_kitti_bin, read_las, read_npy
from pcal_cli.data.scene import Scene
from pcal_cli.errors import PcalError


def histogram(labels: np.ndarray) -> dict[int, int]:
    ids, counts = np.unique(labels, return_counts=True)
    return dict(zip(ids.tolist(), counts.tolist()))


def load_all(dataset) -> dict[str, Scene]:
    return {s.name: s.load() for s in dataset.scenes}


# ---------------------------------------------------------------------------------------------- S3DIS


def write_annotation(path: Path, n: int, seed: int, extra: bytes = b"") -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = np.column_stack([rng.uniform(-5, 5, (n, 3)).round(3), rng.integers(0, 256, (n, 3))])
    text = "".join(f"{x:.3f} {y:.3f} {z:.3f} {r:.0f} {g:.0f} {b:.0f}\n" for x, y, z, r, g, b in rows.tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() + extra)
    return rows


ROOMS = {  # area -> room -> {annotation file: points}
    "Area_1": {"office_1": {"ceiling_1": 120, "chair_1": 80, "chair_2": 40, "stairs_1": 30},
               "hallway_2": {"floor_1": 150, "wall_1": 100}},
    "Area_2": {"conferenceRoom_1": {"table_1": 90, "board_1": 60, "clutter_3": 20}},
    "Area_5": {"hallway_6": {"ceiling_1": 200, "door_1": 50}},
}


@pytest.fixture
def s3dis_raw(tmp_path):
    root = tmp_path / "Stanford3dDataset_v1.2_Aligned_Version"
    seed = 0
    for area, rooms in ROOMS.items():
        for room, files in rooms.items():
            for obj, n in files.items():
                seed += 1
                extra = b""
                if area == "Area_5" and obj == "ceiling_1":  # the known bad line, plus a short one
                    extra = b"2.130 -3.425 3.097 243 246\x10 239\n1.0 2.0 3.0 4 5\n\n"
                write_annotation(root / area / room / "Annotations" / f"{obj}.txt", n, seed, extra)
            (root / area / room / f"{room}.txt").write_text("0 0 0 0 0 0\n")  # whole room: not read
        (root / area / f"{area}_alignmentAngle.txt").write_text("## angle\n")  # stray file: ignored
    return tmp_path


def test_s3dis_lists_rooms_in_order_with_area_split(s3dis_raw):
    data = open_s3dis(s3dis_raw)  # the parent of the Aligned_Version folder is accepted too
    assert [(s.split, s.name) for s in data.scenes] == [
        ("train", "Area_1_hallway_2"), ("train", "Area_1_office_1"),
        ("train", "Area_2_conferenceRoom_1"), ("test", "Area_5_hallway_6"),
    ]
    assert data.spec.name == "s3dis" and len(data.spec.classes) == 13 and data.spec.channels == ("rgb",)
    other = open_s3dis(s3dis_raw / "Stanford3dDataset_v1.2_Aligned_Version", test_area=2)
    assert {s.name for s in other.scenes if s.split == "test"} == {"Area_2_conferenceRoom_1"}


def test_s3dis_class_mapping_and_point_counts(s3dis_raw):
    scenes = load_all(open_s3dis(s3dis_raw))
    office = scenes["Area_1_office_1"]
    # ceiling 0, chair 8 (two files), stairs -> clutter 12
    assert histogram(office.label) == {0: 120, 8: 120, 12: 30}
    assert office.rgb.dtype == np.uint8 and office.xyz.dtype == np.float32 and len(office) == 270
    assert histogram(scenes["Area_2_conferenceRoom_1"].label) == {7: 90, 11: 60, 12: 20}


def test_s3dis_values_are_read_exactly(tmp_path):
    rows = write_annotation(tmp_path / "Area_1" / "r" / "Annotations" / "wall_1.txt", 25, 7)
    scene = open_s3dis(tmp_path, test_area=1).scenes[0].load()
    np.testing.assert_allclose(scene.xyz, rows[:, :3], atol=1e-6)
    np.testing.assert_array_equal(scene.rgb, rows[:, 3:])
    assert histogram(scene.label) == {2: 25}


def test_s3dis_bad_lines_are_skipped_and_counted(s3dis_raw):
    data = open_s3dis(s3dis_raw)
    assert data.notes == []  # nothing read yet
    scenes = load_all(data)
    hallway = scenes["Area_5_hallway_6"]
    assert histogram(hallway.label) == {0: 200, 6: 50}  # both bad lines dropped, blank line ignored
    assert data.notes == ["Area_5_hallway_6: skipped 2 malformed line(s) in Annotations/ceiling_1.txt"]


def test_parse_number_rows_edge_cases():
    rows, skipped = parse_number_rows(b"1 2 3 4 5 6\r\n7 8 9 10 11 12")  # CRLF, no final newline
    assert rows.shape == (2, 6) and skipped == 0
    rows, skipped = parse_number_rows(b"1 2 3 4 5 6\n1.2.3 2 3 4 5 6\n7 8 9 10 11 12\n")  # slow path
    assert rows[:, 0].tolist() == [1, 7] and skipped == 1
    rows, skipped = parse_number_rows(b"a b c d e f\n")
    assert rows.shape == (0, 6) and skipped == 1
    assert parse_number_rows(b"")[0].shape == (0, 6)


def test_s3dis_bad_layouts(tmp_path):
    with pytest.raises(PcalError, match="not found"):
        open_s3dis(tmp_path / "missing")
    with pytest.raises(PcalError, match="no Area_N folders"):
        open_s3dis(tmp_path)
    (tmp_path / "Area_5").mkdir()
    with pytest.raises(PcalError, match="area folder holds no rooms"):
        open_s3dis(tmp_path)
    (tmp_path / "Area_5" / "office_1" / "Annotations").mkdir(parents=True)
    with pytest.raises(PcalError, match="no Annotations"):
        open_s3dis(tmp_path)
    with pytest.raises(PcalError, match="Area_3 not found"):
        open_s3dis(tmp_path, test_area=3)


def test_s3dis_mmdet3d_layout(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("Area_1_office_1", 30), ("Area_5_office_2", 20)):
        points = np.column_stack([rng.random((n, 3)), rng.integers(0, 256, (n, 3))]).astype(np.float32)
        (tmp_path / "points").mkdir(exist_ok=True)
        (tmp_path / "semantic_mask").mkdir(exist_ok=True)
        points.tofile(tmp_path / "points" / f"{name}.bin")
        np.arange(n, dtype=np.int64).__mod__(14).tofile(tmp_path / "semantic_mask" / f"{name}.bin")
    data = open_s3dis(tmp_path)
    assert [(s.split, s.name) for s in data.scenes] == [("train", "Area_1_office_1"), ("test", "Area_5_office_2")]
    scene = data.scenes[0].load()
    assert len(scene) == 30 and histogram(scene.label)[-1] == 2  # id 13 is not a class: ignored


# ---------------------------------------------------------------------------------------------- ScanNet

NYU_IDS = np.array([0, 1, 2, 13, 14, 39, 40, 5, 1, 1])  # 0 unannotated, 13 pillow and 40 not in the 20
NYU_MAPPED = {-1: 3, 0: 3, 1: 1, 12: 1, 19: 1, 4: 1}


def write_scannet_scan(folder: Path, name: str, n: int, labelled: bool = True, label_n: int | None = None):
    scan = folder / name
    scan.mkdir(parents=True)
    rng = np.random.default_rng(len(name) + n)
    vertex = np.zeros(n, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                                ("blue", "u1"), ("alpha", "u1")])
    for axis in "xyz":
        vertex[axis] = rng.random(n)
    vertex["red"] = 200
    face = np.zeros(1, dtype=[("vertex_indices", "i4", (3,))])
    face["vertex_indices"] = [[0, 1, 2]]
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")]).write(
        str(scan / f"{name}_vh_clean_2.ply"))
    if labelled:
        m = n if label_n is None else label_n
        lab = np.zeros(m, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("label", "u2")])
        lab["label"] = np.resize(NYU_IDS, m)
        PlyData([PlyElement.describe(lab, "vertex")]).write(str(scan / f"{name}_vh_clean_2.labels.ply"))


@pytest.fixture
def scannet_raw(tmp_path):
    for name in ("scene0000_00", "scene0000_01", "scene0004_00", "scene0009_02"):
        write_scannet_scan(tmp_path / "scans", name, 40)
    write_scannet_scan(tmp_path / "scans_test", "scene0707_00", 30, labelled=False)
    return tmp_path


def test_scannet_official_layout_mapping_and_default_split(scannet_raw):
    data = open_scannet(scannet_raw)
    assert [(s.split, s.name) for s in data.scenes] == [
        ("train", "scene0000_00"), ("train", "scene0000_01"), ("val", "scene0004_00"),
        ("val", "scene0009_02"), ("test", "scene0707_00"),
    ]
    scenes = load_all(data)
    expected = {k: v * 4 for k, v in NYU_MAPPED.items()}  # 40 points = 4 x the 10 ids
    assert histogram(scenes["scene0000_00"].label) == expected
    assert scenes["scene0000_00"].rgb[:, 0].tolist() == [200] * 40
    assert histogram(scenes["scene0707_00"].label) == {-1: 30}  # scans_test: no labels


def test_scannet_default_rule_keeps_rescans_together():
    assert default_split("scene0004_00") == default_split("scene0004_02") == "val"
    assert default_split("scene0000_00") == default_split("scene0000_01") == "train"
    assert default_split("scene0014_01") == "val" and default_split("odd_name") == "train"


def test_scannet_preprocessed_npy(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("scene0001_00", 50), ("scene0019_00", 20)):
        vert = np.column_stack([rng.random((n, 3)), np.full((n, 3), 128.0)]).astype(np.float32)
        np.save(tmp_path / f"{name}_vert_all.npy", vert)
        np.save(tmp_path / f"{name}_sem_label_all.npy", np.resize(NYU_IDS, n).astype(np.uint32))
    np.save(tmp_path / "scene0002_00_vert_all.npy", np.zeros((5, 6), np.float32))  # no labels file
    data = open_scannet(tmp_path)
    assert [(s.split, s.name) for s in data.scenes] == [
        ("train", "scene0001_00"), ("train", "scene0002_00"), ("val", "scene0019_00")]
    assert any("without _sem_label_all.npy" in note for note in data.notes)
    scenes = load_all(data)
    assert histogram(scenes["scene0001_00"].label) == {k: v * 5 for k, v in NYU_MAPPED.items()}
    assert scenes["scene0001_00"].rgb.max() == 128
    assert histogram(scenes["scene0002_00"].label) == {-1: 5}


def test_scannet_split_file_yaml_and_text(scannet_raw, tmp_path):
    yaml_file = tmp_path / "splits.yaml"
    yaml_file.write_text(yaml.safe_dump({"train": ["scene0004_00"], "test": ["scene0000_00", "scene9999_00"]}))
    data = open_scannet(scannet_raw, split_file=yaml_file)
    assert [(s.split, s.name) for s in data.scenes] == [("test", "scene0000_00"), ("train", "scene0004_00")]
    assert any("3 scene(s) not named" in n for n in data.notes)
    assert any("1 scene(s) named" in n and "not found" in n for n in data.notes)
    text_file = tmp_path / "splits.txt"
    text_file.write_text("# name split\nscene0000_01 val\nscene0009_02 train\n")
    data = open_scannet(scannet_raw, split_file=text_file)
    assert [(s.split, s.name) for s in data.scenes] == [("val", "scene0000_01"), ("train", "scene0009_02")]


def test_scannet_official_lists_found_in_raw(scannet_raw):
    (scannet_raw / "scannetv2_train.txt").write_text("scene0004_00\nscene0000_00\n")
    (scannet_raw / "scannetv2_val.txt").write_text("scene0000_01\n")
    data = open_scannet(scannet_raw)
    assert [(s.split, s.name) for s in data.scenes] == [
        ("train", "scene0000_00"), ("val", "scene0000_01"), ("train", "scene0004_00"), ("test", "scene0707_00")]
    assert any("1 scene(s) not named" in n for n in data.notes)  # scene0009_02


def test_scannet_bad_inputs(tmp_path):
    with pytest.raises(PcalError, match="not found"):
        open_scannet(tmp_path / "nope")
    with pytest.raises(PcalError, match="no ScanNet scans"):
        open_scannet(tmp_path)
    write_scannet_scan(tmp_path / "scans", "scene0000_00", 20, label_n=19)
    data = open_scannet(tmp_path)
    with pytest.raises(PcalError, match="19 vertices"):
        data.scenes[0].load()
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [scene0000_00]\nval: [scene0000_00]\n")
    with pytest.raises(PcalError, match="both 'train' and 'val'"):
        open_scannet(tmp_path, split_file=bad)


def test_split_file_forms(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("a: train\nb: test\n")
    assert read_split_file(path) == {"a": "train", "b": "test"}
    path.write_text("a train\nb sideways\n")
    with pytest.raises(PcalError, match=r"s.yaml:2"):
        read_split_file(path)
    with pytest.raises(PcalError, match="split file not found"):
        read_split_file(tmp_path / "none.txt")


# ---------------------------------------------------------------------------------------------- SemanticKITTI

RAW_SEMANTIC = np.array([10, 252, 253, 0, 1, 52, 99, 40, 60, 81, 258, 70], dtype=np.uint32)
MAPPED_SEMANTIC = [0, 0, 6, -1, -1, -1, -1, 8, 8, 18, 3, 14]


def write_kitti_frame(seq: Path, frame: int, n: int, labels: bool = True):
    rng = np.random.default_rng(frame + n)
    (seq / "velodyne").mkdir(parents=True, exist_ok=True)
    points = np.column_stack([rng.uniform(-20, 20, (n, 3)), rng.random(n)]).astype(np.float32)
    points.tofile(seq / "velodyne" / f"{frame:06d}.bin")
    if labels:
        (seq / "labels").mkdir(exist_ok=True)
        instance = rng.integers(0, 500, n).astype(np.uint32) << 16  # high bits must be removed
        (np.resize(RAW_SEMANTIC, n) | instance).astype(np.uint32).tofile(seq / "labels" / f"{frame:06d}.label")
    return points


@pytest.fixture
def kitti_raw(tmp_path):
    seqs = tmp_path / "dataset" / "sequences"
    for frame in range(5):
        write_kitti_frame(seqs / "00", frame, 24 + frame)
    for frame in range(2):
        write_kitti_frame(seqs / "08", frame, 12)
    write_kitti_frame(seqs / "11", 0, 10, labels=True)  # test: labels ignored even when present
    write_kitti_frame(seqs / "30", 0, 10)  # not a benchmark sequence
    return tmp_path / "dataset"


def test_semantickitti_splits_names_and_mapping(kitti_raw):
    data = open_semantickitti(kitti_raw)
    assert data.spec.channels == ("intensity",) and data.spec.indoor is False and data.spec.profile == "vehicle"
    assert [(s.split, s.name) for s in data.scenes] == (
        [("train", f"00_{i:06d}") for i in range(5)] + [("val", "08_000000"), ("val", "08_000001"),
                                                       ("test", "11_000000")])
    assert data.notes == ["sequence 30 is not part of the benchmark (00-21) and was skipped"]
    scenes = load_all(data)
    scene = scenes["00_000000"]
    assert len(scene) == 24 and scene.intensity is not None and scene.rgb is None
    assert scene.label.tolist() == np.resize(MAPPED_SEMANTIC, 24).tolist()
    assert histogram(scenes["11_000000"].label) == {-1: 10}


def test_semantickitti_frame_step(kitti_raw):
    data = open_semantickitti(kitti_raw / "sequences", frame_step=2)
    assert [s.name for s in data.scenes] == ["00_000000", "00_000002", "00_000004", "08_000000", "11_000000"]
    assert [len(s.load()) for s in data.scenes] == [24, 26, 28, 12, 10]
    with pytest.raises(PcalError, match="frame_step"):
        open_semantickitti(kitti_raw, frame_step=0)


def test_semantickitti_bad_inputs(kitti_raw):
    seq = kitti_raw / "sequences" / "00"
    bin_path = seq / "velodyne" / "000001.bin"
    bin_path.write_bytes(bin_path.read_bytes()[:-6])  # truncated scan
    data = open_semantickitti(kitti_raw)
    with pytest.raises(PcalError, match="000001.bin.*truncated"):
        data.scenes[1].load()
    label_path = seq / "labels" / "000002.label"
    label_path.write_bytes(label_path.read_bytes()[:-4])
    with pytest.raises(PcalError, match="000002.label.*do not match"):
        data.scenes[2].load()
    (kitti_raw / "sequences" / "21" / "velodyne").mkdir(parents=True)
    with pytest.raises(PcalError, match="no .bin scans"):
        open_semantickitti(kitti_raw)
    (kitti_raw / "sequences" / "21" / "velodyne").rmdir()
    (seq / "labels" / "000003.label").unlink()
    with pytest.raises(PcalError, match="no label file for 1 scan"):
        open_semantickitti(kitti_raw)
    with pytest.raises(PcalError, match="not found"):
        open_semantickitti(kitti_raw / "nothing")


def test_read_kitti_bin_raw_ids_without_map(tmp_path):
    write_kitti_frame(tmp_path, 0, 12)
    scene = read_kitti_bin(tmp_path / "velodyne" / "000000.bin", tmp_path / "labels" / "000000.label")
    assert scene.label.tolist() == RAW_SEMANTIC.tolist()


# ---------------------------------------------------------------------------------------------- SensatUrban


def test_sensaturban_bin_layout(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "points").mkdir()
    (tmp_path / "labels").mkdir()
    for name, n in (("birmingham_block_1_0000", 10), ("cambridge_block_15_0003", 8), ("cambridge_block_3", 6)):
        points = np.column_stack([rng.random((n, 3)) * 15, np.full((n, 3), 0.5)]).astype(np.float32)
        points.tofile(tmp_path / "points" / f"{name}.bin")
        (np.arange(n) * 3 % 16).astype(np.uint8).tofile(tmp_path / "labels" / f"{name}.label")
    data = open_sensaturban(tmp_path)
    assert [(s.split, s.name) for s in data.scenes] == [
        ("val", "birmingham_block_1_0000"), ("test", "cambridge_block_15_0003"), ("train", "cambridge_block_3")]
    scene = data.scenes[0].load()
    assert scene.label.tolist() == [0, 3, 6, 9, 12, -1, 2, 5, 8, 11]  # 15 is no class
    assert scene.rgb.tolist() == [[128, 128, 128]] * 10


# ---------------------------------------------------------------------------------------------- folder

CLASS_FILE = {"classes": ["ground", "vegetation", "building"],
              "ids": {2: "ground", 3: "vegetation", 4: "vegetation", 6: "building"},
              "ignore_ids": [1, 7]}


def write_las(path: Path, classification, rgb=True, x0=770500.0, y0=6277550.0):
    laspy = pytest.importorskip("laspy")
    n = len(classification)
    header = laspy.LasHeader(point_format=3 if rgb else 1, version="1.2")
    header.scales = [0.01, 0.01, 0.01]
    header.offsets = [x0, y0, 0.0]
    las = laspy.LasData(header)
    las.x = x0 + np.arange(n) * 0.37
    las.y = y0 + np.arange(n) * 0.01
    las.z = 100.0 + np.arange(n) * 0.05
    las.classification = np.asarray(classification, dtype=np.uint8)
    las.intensity = np.arange(n, dtype=np.uint16) + 1
    if rgb:
        las.red = np.full(n, 65535, np.uint16)
        las.green = np.full(n, 257 * 10, np.uint16)
        las.blue = np.zeros(n, np.uint16)
    las.write(str(path))
    return np.column_stack([x0 + np.arange(n) * 0.37, y0 + np.arange(n) * 0.01, 100.0 + np.arange(n) * 0.05])


@pytest.fixture
def class_file(tmp_path):
    path = tmp_path / "classes.yaml"
    path.write_text(yaml.safe_dump(CLASS_FILE))
    return path


def test_folder_las_and_laz_with_yaml_mapping(tmp_path, class_file):
    raw = tmp_path / "raw"
    raw.mkdir()
    xyz = write_las(raw / "a.las", [2, 3, 4, 6, 1, 7, 2, 2])
    write_las(raw / "b.laz", [6, 6, 3, 1])
    data = open_folder(raw, classes=class_file)
    assert data.spec.classes == ("ground", "vegetation", "building")
    assert data.spec.channels == ("rgb", "intensity") and data.spec.indoor is False
    assert [(s.split, s.name) for s in data.scenes] == [("train", "a"), ("train", "b")]
    a, b = (s.load() for s in data.scenes)
    assert a.label.tolist() == [0, 1, 1, 2, -1, -1, 0, 0]
    assert b.label.tolist() == [2, 2, 1, -1]
    np.testing.assert_allclose(a.xyz.astype(np.float64) + a.offset, xyz, atol=2e-3)  # centimetres kept
    assert a.offset.tolist() == [770500.0, 6277550.0, 100.0]
    assert a.rgb.tolist()[0] == [255, 10, 0] and a.intensity.tolist()[:3] == [1, 2, 3]


def test_folder_unmapped_ids_are_refused(tmp_path, class_file):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_las(raw / "a.las", [2, 3])
    write_las(raw / "z.las", [2, 9, 11, 9])
    data = open_folder(raw, classes=class_file)
    with pytest.raises(PcalError, match=r"z\.las: label ids outside the class list: 9, 11 .*classes\.yaml"):
        data.scenes[1].load()
    with pytest.raises(PcalError, match="label ids outside the class list: 2, 3"):
        open_folder(raw, classes="ground,building")  # comma list: raw ids 0..1 only


def test_folder_npy_column_conventions_and_sibling_labels(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "raw"
    raw.mkdir()
    xyz = rng.random((6, 3))
    np.save(raw / "a.npy", np.column_stack([xyz, rng.random((6, 3)), [0, 1, 2, 2, -1, 1]]))  # xyz rgb(0..1) label
    np.save(raw / "b.npy", np.column_stack([xyz, np.full((6, 3), 255.0)]))  # xyz rgb, unlabelled
    np.save(raw / "c.npy", np.column_stack([xyz, np.full((6, 3), 9.0)]))  # xyz rgb + sibling labels
    np.save(raw / "c_label.npy", np.array([2, 2, 2, 1, 1, 0], dtype=np.int32))
    data = open_folder(raw, classes="road,car,tree")
    assert [s.name for s in data.scenes] == ["a", "b", "c"] and data.spec.channels == ("rgb",)
    a, b, c = (s.load() for s in data.scenes)
    assert a.label.tolist() == [0, 1, 2, 2, -1, 1] and a.rgb.max() <= 255
    np.testing.assert_allclose(a.xyz, xyz, atol=1e-6)
    assert histogram(b.label) == {-1: 6} and b.rgb.max() == 255
    assert c.label.tolist() == [2, 2, 2, 1, 1, 0] and c.rgb.max() == 9
    assert len(read_npy(raw / "a.npy")) == 6
    np.save(raw / "d.npy", np.column_stack([xyz, [0, 0, 1, 1, 2, 2]]))  # xyz label: no colours
    mixed = open_folder(raw, classes="road,car,tree")  # default: the channels every file has
    assert mixed.spec.channels == () and mixed.scenes[0].load().rgb is None
    assert mixed.notes == ["input channel rgb dropped: 1 of 4 file(s) have no colours (d.npy); "
                           "--channels rgb makes that an error"]
    with pytest.raises(PcalError, match=r"d\.npy: no rgb \(colours\) in this file"):
        open_folder(raw, classes="road,car,tree", channels="rgb")


def test_folder_split_subfolders_and_split_file(tmp_path):
    raw = tmp_path / "raw"
    for split, name in (("train", "s1"), ("train", "s2"), ("val", "s3"), ("test", "s4")):
        (raw / split).mkdir(parents=True, exist_ok=True)
        write_ply(raw / split / f"{name}.ply", Scene(name, np.random.default_rng(1).random((5, 3)),
                                                     label=np.array([0, 1, 1, 0, -1])))
    (raw / "ignored.ply").write_text("not read: split subfolders are used")
    data = open_folder(raw, classes="a,b")
    assert [(s.split, s.name) for s in data.scenes] == [("train", "s1"), ("train", "s2"), ("val", "s3"), ("test", "s4")]
    assert data.spec.channels == () and data.spec.indoor is True
    assert histogram(data.scenes[2].load().label) == {-1: 1, 0: 2, 1: 2}
    split_file = tmp_path / "split.yaml"
    split_file.write_text("val: [s1]\ntest: [s2, s4]\n")
    data = open_folder(raw, classes="a,b", split_file=split_file)
    assert [(s.split, s.name) for s in data.scenes] == [("val", "s1"), ("test", "s2"), ("test", "s4")]
    assert data.notes == [f"1 scene(s) not named in {split_file} were skipped"]


def test_folder_class_options(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_ply(raw / "s.ply", Scene("s", np.zeros((3, 3)), label=np.array([0, 1, 1])))
    with pytest.raises(PcalError, match="have labels but no class list"):
        open_folder(raw)
    colored = tmp_path / "c.yml"
    colored.write_text("classes: [a, b]\ncolors: [[1, 2, 3], [4, 5, 6]]\n")
    assert open_folder(raw, classes=colored).spec.colors == ((1, 2, 3), (4, 5, 6))
    for text, message in (("classes: [a, a]", "duplicate class"), ("classes: [a]\nids: {0: b}", "not in 'classes'"),
                          ("classes: [a]\nignore: [1]", "unknown key"), ("classes: [a]\nids: {1: a}\nignore_ids: [1]",
                                                                         "both mapped and ignored")):
        colored.write_text(text)
        with pytest.raises(PcalError, match=message):
            open_folder(raw, classes=colored)


def test_folder_bad_inputs(tmp_path):
    with pytest.raises(PcalError, match="not found"):
        open_folder(tmp_path / "missing", classes="a")
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "notes.txt").write_text("no scenes here")
    with pytest.raises(PcalError, match="no .ply, .las, .laz or .npy scenes"):
        open_folder(raw, classes="a")
    np.save(raw / "wrong.npy", np.zeros((4, 5), np.float32))
    with pytest.raises(PcalError, match=r"wrong\.npy: array of shape \(4, 5\)"):
        open_folder(raw, classes="a")
    np.save(raw / "wrong.npy", np.zeros((400, 3), np.float32))
    (raw / "wrong.npy").write_bytes((raw / "wrong.npy").read_bytes()[:-100])
    with pytest.raises(PcalError, match=r"wrong\.npy: not a readable \.npy"):
        open_folder(raw, classes="a")
    np.save(raw / "wrong.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PcalError, match=r"wrong\.npy: not a readable \.npy"):
        open_folder(raw, classes="a")
    (raw / "wrong.npy").unlink()
    write_ply(raw / "t.ply", Scene("t", np.zeros((50, 3))))
    (raw / "t.ply").write_bytes((raw / "t.ply").read_bytes()[:-30])
    with pytest.raises(PcalError, match=r"t\.ply"):
        open_folder(raw, classes="a")
    (raw / "t.ply").unlink()
    write_las(raw / "t.laz", [2, 3, 4, 6] * 50)
    (raw / "t.laz").write_bytes((raw / "t.laz").read_bytes()[:-200])
    with pytest.raises(PcalError, match=r"t\.laz: not a readable LAS/LAZ"):
        open_folder(raw, classes=["a"])


def test_las_without_laspy_names_the_extra(tmp_path, monkeypatch):
    write_las(tmp_path / "a.las", [2])
    monkeypatch.setitem(sys.modules, "laspy", None)  # import laspy -> ImportError
    with pytest.raises(PcalError, match=r"a\.las: .*pip install 'pcal\[las\]'"):
        read_las(tmp_path / "a.las")


def test_las_without_colours_or_classes(tmp_path):
    write_las(tmp_path / "a.las", [0, 0, 0], rgb=False)
    scene = read_las(tmp_path / "a.las")
    assert scene.rgb is None and scene.intensity is not None and histogram(scene.label) == {-1: 3}


# ---------------------------------------------------------------------------------------------- channels, NIR, ASPRS


def write_las8(path: Path, classification, nir=None, rgb=None, intensity=None, x0=770500.0):
    """A LAS 1.4 point format 8 file (RGB + NIR), each channel zero unless given."""
    laspy = pytest.importorskip("laspy")
    n = len(classification)
    header = laspy.LasHeader(point_format=8, version="1.4")
    header.scales = [0.01, 0.01, 0.01]
    header.offsets = [x0, 6277550.0, 0.0]
    las = laspy.LasData(header)
    las.x = x0 + np.arange(n) * 0.5
    las.y = 6277550.0 + np.arange(n) * 0.25
    las.z = np.full(n, 100.0)
    las.classification = np.asarray(classification, dtype=np.uint8)
    for name, values in (("nir", nir), ("intensity", intensity)):
        if values is not None:
            las[name] = np.asarray(values, dtype=np.uint16)
    if rgb is not None:
        for channel in ("red", "green", "blue"):
            las[channel] = np.full(n, rgb, np.uint16)
    las.write(str(path))


def test_las_nir_is_read_and_zero_nir_is_absent(tmp_path):
    from pcal_cli.data.readers import las_channels

    write_las8(tmp_path / "a.las", [2, 2, 6], nir=[0, 500, 65535], intensity=[1, 2, 3])
    scene = read_las(tmp_path / "a.las")
    assert scene.nir.tolist() == [0.0, 500.0, 65535.0] and scene.nir.dtype == np.float32
    assert scene.rgb is None  # declared by format 8, zero everywhere
    assert las_channels(tmp_path / "a.las") == {"intensity", "nir"}
    assert las_channels(tmp_path / "a.las", chunk=1) == {"intensity", "nir"}  # seen in a later chunk too
    write_las8(tmp_path / "b.las", [2, 2, 6], rgb=65535)
    assert read_las(tmp_path / "b.las").nir is None and las_channels(tmp_path / "b.las") == {"rgb"}
    write_las(tmp_path / "c.las", [2, 3])  # point format 3: no nir dimension at all
    assert read_las(tmp_path / "c.las").nir is None and las_channels(tmp_path / "c.las") == {"rgb", "intensity"}


def test_folder_channels_default_is_what_every_file_has(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_las8(raw / "a.las", [2, 6], nir=[10, 20], intensity=[5, 6], rgb=257)
    write_las8(raw / "b.las", [2, 6], nir=[30, 40], intensity=[7, 8])
    write_las8(raw / "c.las", [2, 6], nir=[50, 60])
    data = open_folder(raw, classes="asprs")
    assert data.spec.channels == ("nir",)
    assert data.notes == [
        "input channel rgb dropped: 2 of 3 file(s) have no colours (b.las, c.las); --channels rgb makes that an error",
        "input channel intensity dropped: 1 of 3 file(s) have no intensity (c.las); "
        "--channels intensity makes that an error"]
    a = data.scenes[0].load()
    assert a.rgb is None and a.intensity is None and a.nir.tolist() == [10.0, 20.0]
    same = open_folder(raw, classes="asprs", channels="nir")
    assert same.spec.channels == ("nir",) and same.notes == []
    bare = open_folder(raw, classes="asprs", channels="none")
    assert bare.spec.channels == () and bare.scenes[2].load().nir is None
    with pytest.raises(PcalError, match=r"^\S*c\.las: no intensity \(intensity\) in this file, but the channels "
                                        r"asked for include it$"):
        open_folder(raw, classes="asprs", channels="intensity,nir")


def test_folder_channel_order_is_canonical_and_identical_files_keep_all(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("a", "b"):
        write_las8(raw / f"{name}.las", [2, 6], nir=[1, 2], intensity=[3, 4], rgb=1000)
    data = open_folder(raw, classes="asprs", channels="nir,rgb,rgb")
    assert data.spec.channels == ("rgb", "nir")
    full = open_folder(raw, classes="asprs")
    assert full.spec.channels == ("rgb", "intensity", "nir") and full.notes == []


@pytest.mark.parametrize("value, message", [
    ("depth", "unknown channel 'depth'"), ("rgb,", "unknown channel ''"), ("none,rgb", "'none' cannot be combined"),
    ("intensty", "did you mean 'intensity'"),
])
def test_folder_bad_channels(tmp_path, value, message):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_ply(raw / "s.ply", Scene("s", np.zeros((3, 3)), label=np.array([0, 1, 1])))
    with pytest.raises(PcalError, match=message):
        open_folder(raw, classes="a,b", channels=value)


def test_unreadable_file_is_left_to_its_own_load(tmp_path):
    """A file the channel probe cannot read does not vote; its load fails with the reader's message."""
    raw = tmp_path / "raw"
    raw.mkdir()
    write_ply(raw / "a.ply", Scene("a", np.zeros((3, 3)), label=np.array([0, 1, 1]), rgb=np.zeros((3, 3))))
    (raw / "b.ply").write_bytes(b"garbage")
    data = open_folder(raw, classes="a,b")
    assert data.spec.channels == ("rgb",) and data.notes == []
    with pytest.raises(PcalError, match=r"b\.ply: not a readable PLY file"):
        data.scenes[1].load()


def test_asprs_table_maps_standard_codes_and_ignores_noise(tmp_path):
    from pcal_cli.data.classes import ASPRS_CLASSES, ASPRS_TABLE

    assert len(ASPRS_CLASSES) == 13 and ASPRS_CLASSES[:5] == (
        "ground", "low vegetation", "medium vegetation", "high vegetation", "building")
    assert [code for code, _, _ in ASPRS_TABLE] == [2, 3, 4, 5, 6, 9, 10, 11, 13, 14, 15, 16, 17]
    raw = tmp_path / "raw"
    raw.mkdir()
    codes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]
    write_las8(raw / "a.las", codes, intensity=np.arange(1, 20))
    data = open_folder(raw, classes="asprs")
    assert data.spec.classes == ASPRS_CLASSES and len(set(data.spec.colors)) == 13
    assert data.scenes[0].load().label.tolist() == [-1, -1, 0, 1, 2, 3, 4, -1, -1, 5, 6, 7, -1, 8, 9, 10, 11, 12, -1]
    write_las8(raw / "b.las", [2, 64, 65, 6])  # only present classes? no: the table is fixed
    data = open_folder(raw, classes="ASPRS")
    assert data.spec.classes == ASPRS_CLASSES
    with pytest.raises(PcalError, match=r"b\.las: label ids outside the class list: 64, 65 \(not ASPRS standard "
                                        r"classes: pass --ignore-ids 64,65 to ignore them, or give a YAML class map\)"):
        data.scenes[1].load()
    fixed = open_folder(raw, classes="asprs", ignore_ids="64-67")
    assert fixed.scenes[1].load().label.tolist() == [0, -1, -1, 4]


def test_ignore_ids_option(tmp_path):
    from pcal_cli.data.datasets.folder import parse_id_list

    assert parse_id_list("64,65, 70-72") == {64, 65, 70, 71, 72} and parse_id_list([3, 4]) == {3, 4}
    for bad in ("x", "5-3", "-1", "1-99999", ""):
        with pytest.raises(PcalError, match="--ignore-ids"):
            parse_id_list(bad)
    raw = tmp_path / "raw"
    raw.mkdir()
    write_ply(raw / "s.ply", Scene("s", np.zeros((4, 3)), label=np.array([0, 1, 7, 9])))
    data = open_folder(raw, classes="a,b", ignore_ids="7,9")
    assert data.scenes[0].load().label.tolist() == [0, 1, -1, -1]
    with pytest.raises(PcalError, match=r"--ignore-ids: raw id\(s\) 1 are classes in the class list"):
        open_folder(raw, classes="a,b", ignore_ids="1,7")


# ---------------------------------------------------------------------------------------------- split files everywhere


def test_split_file_for_semantickitti_s3dis_and_sensaturban(kitti_raw, s3dis_raw, tmp_path):
    split = tmp_path / "split.yaml"
    split.write_text("train: [08_000000]\ntest: [00_000001]\n")
    data = open_semantickitti(kitti_raw, split_file=split)
    assert [(s.split, s.name) for s in data.scenes] == [("test", "00_000001"), ("train", "08_000000")]
    assert f"scene(s) not named in {split} were skipped" in data.notes[-1]
    assert (data.scenes[1].load().label >= 0).any()  # the val scan keeps its labels in train

    split.write_text("Area_1_office_1 train\nArea_2_conferenceRoom_1 test\n")
    rooms = open_s3dis(s3dis_raw, test_area=4, split_file=split)  # no Area_4: fine with a split file
    assert [(s.split, s.name) for s in rooms.scenes] == [("train", "Area_1_office_1"),
                                                         ("test", "Area_2_conferenceRoom_1")]
    with pytest.raises(PcalError, match="test area Area_4 not found"):
        open_s3dis(s3dis_raw, test_area=4)

    (tmp_path / "sensat" / "points").mkdir(parents=True)
    (tmp_path / "sensat" / "labels").mkdir()
    for name in ("birmingham_block_1_0000", "cambridge_block_3"):
        np.zeros((4, 6), np.float32).tofile(tmp_path / "sensat" / "points" / f"{name}.bin")
        np.zeros(4, np.uint8).tofile(tmp_path / "sensat" / "labels" / f"{name}.label")
    split.write_text("birmingham_block_1_0000: train\ncambridge_block_3: test\n")
    blocks = open_sensaturban(tmp_path / "sensat", split_file=split)
    assert [(s.split, s.name) for s in blocks.scenes] == [("train", "birmingham_block_1_0000"),
                                                          ("test", "cambridge_block_3")]
    split.write_text("nosuch: train\n")
    with pytest.raises(PcalError, match="names none of the scenes found"):
        open_sensaturban(tmp_path / "sensat", split_file=split)
