"""Label files: the sparse compressed ``.npz`` format, and the dense ``.npy`` of earlier versions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pcal_cli.atomic import sha256_file, write_json, write_npy
from pcal_cli.check import PROBLEM, check_project
from pcal_cli.errors import PcalError
from pcal_cli.label_files import (LabelFileError, encode_labels, known_count, label_file, label_files,
                                  read_label_file, write_label_file)
from pcal_cli.project import Project
from pcal_cli.rounds import labelled_counts, load_labels, read_ledger
from pcal_cli.steps.seed import seed_round

from conftest import project_copy, synthetic_project
from testing.faults import check_invariants


def _dense(n: int, known: np.ndarray, values) -> np.ndarray:
    labels = np.full(n, -1, dtype=np.int16)
    labels[known] = values
    return labels


@pytest.mark.parametrize("case", ["no points", "none known", "one known", "sparse", "void", "all known",
                                  "wide class ids", "first and last"])
def test_dense_file_dense_round_trip(case, tmp_path):
    rng = np.random.default_rng(0)
    n = 5000
    labels = {
        "no points": np.zeros(0, np.int16),
        "none known": _dense(n, [], []),
        "one known": _dense(n, [17], [3]),
        "sparse": _dense(n, rng.choice(n, 50, replace=False), rng.integers(0, 13, 50)),
        "void": _dense(n, [0, 5, 9], [-2, 4, -2]),
        "all known": np.where(rng.random(n) < 0.1, -2, rng.integers(0, 19, n)).astype(np.int16),
        "wide class ids": _dense(n, [1, 2, 4000], [300, 0, 32000]),
        "first and last": _dense(n, [0, n - 1], [1, 2]),
    }[case]
    path = tmp_path / "scene.npz"
    write_label_file(path, labels)
    back = read_label_file(path)
    assert back.dtype == np.int16 and back.shape == labels.shape
    np.testing.assert_array_equal(back, labels)
    assert known_count(path) == int((labels != -1).sum())
    with np.load(path, allow_pickle=False) as data:  # a plain numpy archive
        assert sorted(data.files) == ["index_deltas", "labels", "num_points"]
        assert data["labels"].dtype == (np.int16 if case == "wide class ids" else np.int8)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_equal_labels_give_equal_bytes(tmp_path):
    labels = _dense(1000, [3, 400, 999], [1, 2, 3])
    write_label_file(tmp_path / "a.npz", labels)
    write_label_file(tmp_path / "b.npz", labels.copy())
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_a_sparsely_labelled_scan_is_small(tmp_path):
    """A SemanticKITTI-sized scan (120,000 points) with 0.1 % labelled: the dense int16 file is
    240 kB, the sparse one about 1 kB, region-labelled (runs of points) or scattered."""
    n, rng = 120_000, np.random.default_rng(1)
    scattered = _dense(n, rng.choice(n, 120, replace=False), rng.integers(0, 19, 120))
    runs = np.concatenate([np.arange(s, s + 40) for s in (1_000, 50_000, 99_000)])
    regions = _dense(n, runs, rng.integers(0, 19, len(runs)))
    write_npy(tmp_path / "dense.npy", scattered)
    assert (tmp_path / "dense.npy").stat().st_size > 240_000
    for name, labels in (("scattered", scattered), ("regions", regions)):
        write_label_file(tmp_path / f"{name}.npz", labels)
        assert (tmp_path / f"{name}.npz").stat().st_size < 1_500, name
    full = rng.integers(0, 19, n).astype(np.int16)  # fully labelled: still no larger than dense
    write_label_file(tmp_path / "full.npz", full)
    assert (tmp_path / "full.npz").stat().st_size < 240_000


def test_the_old_dense_format_still_reads(tmp_path):
    labels = _dense(300, [1, 2, 299], [0, -2, 5])
    write_npy(tmp_path / "old.npy", labels)
    np.testing.assert_array_equal(read_label_file(tmp_path / "old.npy"), labels)
    assert known_count(tmp_path / "old.npy") == 3
    write_label_file(tmp_path / "new.npz", labels)
    assert label_file(tmp_path, "old") == tmp_path / "old.npy"
    assert label_file(tmp_path, "new") == tmp_path / "new.npz"
    assert label_file(tmp_path, "none") is None
    write_npy(tmp_path / "new.npy", labels)  # both formats for one scene: the new one comes first
    assert label_file(tmp_path, "new") == tmp_path / "new.npz"
    assert [p.name for p in label_files(tmp_path)["new"]] == ["new.npz", "new.npy"]


def _archive(path, **arrays):
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


@pytest.mark.parametrize("damage, message", [
    ("garbage", None),
    ("truncated", None),
    ("missing key", "no index_deltas"),
    ("unsorted", "not strictly increasing"),
    ("repeated index", "not strictly increasing"),
    ("index out of range", "outside the scene's 10 points"),
    ("stores unknown", "unknown label"),
    ("float labels", "integer"),
    ("length mismatch", "2 indices for 1 labels"),
    ("one array", "not a pcal .npz"),
    ("pickled", None),
])
def test_damaged_files_are_a_clear_error(damage, message, tmp_path):
    path = tmp_path / "room.npz"
    good = {"num_points": np.int64(10), "index_deltas": np.array([1, 2], np.uint32), "labels": np.array([0, 1], np.int8)}
    if damage == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    elif damage == "truncated":
        write_label_file(path, _dense(10, [1, 3], [0, 1]))
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "missing key":
        _archive(path, num_points=good["num_points"], labels=good["labels"])
    elif damage == "unsorted":
        _archive(path, **{**good, "index_deltas": np.array([5, -2], np.int64)})
    elif damage == "repeated index":
        _archive(path, **{**good, "index_deltas": np.array([3, 0], np.uint32)})
    elif damage == "index out of range":
        _archive(path, **{**good, "index_deltas": np.array([3, 7], np.uint32)})
    elif damage == "stores unknown":
        _archive(path, **{**good, "labels": np.array([0, -1], np.int8)})
    elif damage == "float labels":
        _archive(path, **{**good, "labels": np.array([0.0, 1.0])})
    elif damage == "length mismatch":
        _archive(path, **{**good, "labels": np.array([0], np.int8)})
    elif damage == "one array":
        with open(path, "wb") as handle:
            np.save(handle, np.zeros(10, np.int16))
    elif damage == "pickled":
        with open(path, "wb") as handle:
            np.savez(handle, num_points=np.int64(10), index_deltas=np.array([1], np.uint32),
                     labels=np.array([{"a": 1}], dtype=object))
    with pytest.raises(LabelFileError, match=message):
        read_label_file(path)
    with pytest.raises(LabelFileError):
        known_count(path)


def test_writing_refuses_what_the_format_cannot_hold(tmp_path):
    with pytest.raises(LabelFileError, match="1-D integer"):
        encode_labels(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=".npz"):
        write_label_file(tmp_path / "x.npy", np.zeros(4, np.int16))


# -- a project with label files of both formats ----------------------------------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels") / "p"
    synthetic_project(root, 3, 1200)  # room_000 and room_001 train
    return root


def _make_legacy(project: Project, round_index: int) -> None:
    """Rewrite a round's label files as an earlier version wrote them (dense int16 ``.npy``)."""
    folder = project.round_dir(round_index)
    record = json.loads((folder / "labelling.json").read_text())
    checksums = {}
    for name, (path,) in label_files(folder / "labels").items():
        old = folder / "labels" / f"{name}.npy"
        write_npy(old, read_label_file(path))
        path.unlink()
        checksums[f"labels/{old.name}"] = sha256_file(old)
    record["checksums"] = checksums
    write_json(folder / "labelling.json", record)


def test_a_project_with_old_label_files_goes_through_a_round(base, tmp_path, pcal):
    project = project_copy(base, tmp_path)
    seed_round(project, "random", "point", "2%", seed=0)
    _make_legacy(project, 0)
    labels_0 = project.round_dir(0) / "labels"
    assert sorted(p.name for p in labels_0.iterdir()) == ["room_000.npy", "room_001.npy"]
    old = {p.stem: np.load(p, allow_pickle=False) for p in labels_0.glob("*.npy")}
    assert all(a.dtype == np.int16 for a in old.values())
    counts = labelled_counts(project, 0)
    assert counts == {n: int((a != -1).sum()) for n, a in old.items()}
    assert [f for f in check_project(project) if f.status == PROBLEM] == []

    for args in (("train", "--steps", "1", "--cr", "0.125", "--device", "cpu"),
                 ("score", "--scorer", "random", "--device", "cpu"),
                 ("select", "--budget", "5%"),
                 ("label", "--oracle")):
        result = pcal(*args, "-p", project.root)
        assert result.code == 0, (args, result.err)
    assert project.rounds() == [0, 1]
    labels_1 = project.round_dir(1) / "labels"
    assert sorted(p.suffix for p in labels_1.iterdir()) == [".npz", ".npz"]  # new writes: the new format
    for name, before in old.items():
        after = load_labels(project, 1, name, len(before))
        known = before != -1
        np.testing.assert_array_equal(after[known], before[known])  # labels only grow, across formats
    assert sum(labelled_counts(project, 1).values()) > sum(counts.values())
    assert sum(e["points"] for e in read_ledger(project)) == sum(labelled_counts(project, 1).values())
    manifest = json.loads((project.round_dir(0) / "manifest.json").read_text())["files"]
    assert {f"labels/{n}.npy" for n in old} <= set(manifest)  # the closed old round keeps its checksums
    assert [f for f in check_project(project) if f.status == PROBLEM] == []
    assert check_invariants(project.root) == []


def test_two_label_files_for_one_scene_are_a_problem(base, tmp_path):
    project = project_copy(base, tmp_path)
    seed_round(project, "random", "region", "10%", seed=0)
    path = next((project.round_dir(0) / "labels").glob("*.npz"))
    write_npy(path.with_suffix(".npy"), read_label_file(path))
    problems = [f.detail for f in check_project(project) if f.status == PROBLEM]
    assert any("two label files" in p for p in problems), problems
    assert any("two label files" in p for p in check_invariants(project.root)), problems


def test_a_damaged_label_file_is_one_clear_error(base, tmp_path):
    project = project_copy(base, tmp_path)
    seed_round(project, "random", "region", "10%", seed=0)
    path = next((project.round_dir(0) / "labels").glob("*.npz"))
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(PcalError, match="unreadable label file"):
        labelled_counts(project, 0)
    with pytest.raises(PcalError, match="unreadable label file"):
        load_labels(project, 0, path.stem, 1200)
    problems = [f.detail for f in check_project(project) if f.status == PROBLEM]
    assert any("unreadable" in p for p in problems), problems
