"""A catalogue of mistakes a user can make, and the project rule they all obey.

Rule: every bad input ends with ONE line on stderr (``error: ...``), exit code 2, no traceback,
and NOTHING written: the project (and the folder around it) is byte-identical before and after,
and no partial project, round folder or temporary file appears.

Each case of ``CASES`` sets up the smallest state that shows the mistake (a copy of one of the
tiny projects built once for the module, or a raw folder of scans) and names the command. The
list is documented, with the message each case gives, in docs/errors.md.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from pcal_cli.cli import main
from pcal_cli.label_files import write_label_file
from pcal_cli.project import LOCK_NAME

from conftest import tree_bytes

PROJ = "proj"  # every case's project is <case folder>/proj, and commands run in the case folder


# -- the tiny projects, built once per module ----------------------------------------------------

def _run(*args: str | Path) -> None:
    """Run the CLI in-process for a fixture; anything but exit code 0 stops the module."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    assert code == 0, f"fixture command failed ({code}): pcal {' '.join(map(str, args))}"


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    return build_bases(tmp_path_factory.mktemp("bases"))


def build_bases(root: Path) -> dict[str, Path]:
    """Projects at successive stages of the loop (each a separate folder, copied per case):

    - ``fresh``: ``prepare synthetic`` (4 rooms of 1,200 points: 2 train, 2 test);
    - ``trained``: + ``seed --budget 20%`` (round 0) + a 1-step MinkUNet cr 0.125 (r000/model.pt);
    - ``selected``: + ``score`` (margin per region) + ``select --budget 10%`` (r000/queries.json);
    - ``looped``: + ``label --oracle`` (round 1, no model yet).
    """
    fresh = root / "fresh"
    _run("prepare", "synthetic", "-p", fresh, "--scenes", "4", "--points", "1200", "--seed", "0")
    trained = root / "trained"
    shutil.copytree(fresh, trained)
    _run("seed", "-p", trained, "--budget", "20%")
    _run("train", "-p", trained, "--cr", "0.125", "--steps", "1", "--device", "cpu")
    selected = root / "selected"
    shutil.copytree(trained, selected)
    _run("score", "-p", selected, "--device", "cpu")
    _run("select", "-p", selected, "--budget", "10%")
    looped = root / "looped"
    shutil.copytree(selected, looped)
    _run("label", "-p", looped, "--oracle")
    return {"fresh": fresh, "trained": trained, "selected": selected, "looped": looped}


# -- helpers for setting up a case ----------------------------------------------------------------

def write_cloud(path: Path, n: int = 400, seed: int = 0, *, fields: tuple[str, ...] = ("x", "y", "z"),
                xyz_type: str = "f4", labels: np.ndarray | None = None) -> Path:
    """A binary PLY of ``n`` random points with ``fields`` (x y z by default), colours and labels."""
    rng = np.random.default_rng(seed)
    columns = [(axis, xyz_type) for axis in fields] + [("red", "u1"), ("green", "u1"), ("blue", "u1"),
                                                       ("label", "i2")]
    data = np.zeros(n, dtype=columns)
    for axis in fields:
        values = rng.random(n) * 3
        data[axis] = (values * 40).astype(xyz_type) if xyz_type.startswith("i") else values
    for channel in ("red", "green", "blue"):
        data[channel] = rng.integers(0, 256, n)
    data["label"] = rng.integers(0, 3, n) if labels is None else labels
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(data, "vertex")], text=False, byte_order="<").write(str(path))
    return path


def raw_folder(root: Path, bad: Callable[[Path], object] | None = None) -> Path:
    """``root/raw`` with one good scan ``a.ply``, then ``bad(root/raw/b.ply)`` writes the bad one
    (read second, so the failure happens while prepare is writing its staging folder)."""
    raw = root / "raw"
    write_cloud(raw / "a.ply", seed=1)
    if bad is not None:
        bad(raw / "b.ply")
    return raw


PREPARE_FOLDER = ("prepare", "folder", "raw", "-p", PROJ, "--classes", "a,b,c", "--regions", "cells")


def edit_yaml(root: Path, old: str, new: str) -> None:
    path = root / PROJ / "pcal.yaml"
    text = path.read_text()
    assert old in text, f"{old!r} not in pcal.yaml"
    path.write_text(text.replace(old, new, 1))


def label_file(root: Path, round_index: int = 0) -> Path:
    """The first label file of a round (room_000 or room_001)."""
    files = sorted((root / PROJ / "rounds" / f"r{round_index:03d}" / "labels").glob("*.npz"))
    assert files, "the round has no label file"
    return files[0]


def _legacy_label_file(path: Path, array: np.ndarray) -> None:
    """Replace a label file with a dense ``.npy`` of earlier versions holding ``array``."""
    path.unlink()
    np.save(path.with_suffix(".npy"), array)


def untrain(root: Path) -> None:
    """Remove round 0's model so that 'pcal train' really reads the labels."""
    (root / PROJ / "rounds" / "r000" / "model.pt").unlink()


def garbage(path: Path, size: int = 3000, seed: int = 7) -> None:
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())


def export_round(root: Path, into: str = "exp") -> Path:
    """Round 0's queries exported for a person (outside the project), as 'pcal label export' does."""
    from pcal_cli.annotation import export_queries
    from pcal_cli.project import Project

    export_queries(Project.open(root / PROJ), 0, root / into)
    return root / into


# -- the catalogue ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    base: str | None  # which module project is copied to <case>/proj (None: no project)
    what: str  # what the user did, for docs/errors.md
    setup: Callable[[Path], list[str]]  # prepares <case> and returns the command line (after 'pcal')
    fragment: str = ""  # a piece of the expected message


def _c(id: str, base: str | None, what: str, args, fragment: str = "",
       setup: Callable[[Path], object] | None = None) -> Case:
    """A case whose command line is fixed (``args``); ``setup(root)`` changes the state first."""
    def build(root: Path) -> list[str]:
        if setup is not None:
            setup(root)
        return [str(a) for a in args]
    return Case(id, base, what, build, fragment)


def _truncate(path: Path) -> None:
    write_cloud(path, n=2000, seed=2)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def _all_nan(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.zeros(50, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("label", "i2")])
    data["x"] = np.nan
    PlyData([PlyElement.describe(data, "vertex")]).write(str(path))


def _lock_held(root: Path) -> None:
    import socket

    info = {"pid": 1, "host": socket.gethostname(), "command": "train", "since": 0.0}
    (root / PROJ / LOCK_NAME).write_text(json.dumps(info))


def _image_features(root: Path) -> None:
    folder = root / "images"
    folder.mkdir()
    np.save(folder / "room_000.npy", np.random.default_rng(0).random((4, 8)).astype(np.float32))


def _stray_file(root: Path) -> None:
    (root / PROJ).mkdir()
    (root / PROJ / "notes.txt").write_text("my notes\n")


def _class_yaml(root: Path) -> None:
    (root / "classes.yaml").write_text("classes: [a, b\nids: {0: a\n")


def _colourless(path: Path) -> None:
    """A PLY of x y z and labels only (no colours)."""
    data = np.zeros(300, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("label", "i2")])
    data["x"] = np.arange(300) / 100
    PlyData([PlyElement.describe(data, "vertex")], text=False, byte_order="<").write(str(path))


def _second_export(root: Path) -> None:
    folder = export_round(root)
    first = sorted(folder.glob("*.ply"))[0]
    shutil.copy(first, folder / "room_003.ply")  # room_003 is a test scene, never queried


def _one_point_project(root: Path) -> None:
    """A project whose scan b has a single point, and round 0 that labels that point alone (a budget of
    one point: only b's one-point region fits)."""
    raw_folder(root, lambda p: write_cloud(p, n=1))
    _run("prepare", "folder", root / "raw", "-p", root / PROJ, "--classes", "a,b,c")
    _run("seed", "-p", root / PROJ, "--budget", "1")
    assert [p.name for p in (root / PROJ / "rounds" / "r000" / "labels").iterdir()] == ["b.npz"]
    shutil.rmtree(root / "raw")


def _cut_short(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _broken_queries(root: Path) -> None:
    (root / PROJ / "rounds" / "r000" / "queries.json").write_text('{"round": 0, "queries": [')


CASES: list[Case] = [
    # ---- prepare: raw scans ----
    _c("prepare-corrupt-ply", None, "a scan file that is garbage bytes (b.ply)", PREPARE_FOLDER, "b.ply",
       lambda r: raw_folder(r, garbage)),
    _c("prepare-truncated-ply", None, "a PLY cut in half (b.ply)", PREPARE_FOLDER, "b.ply",
       lambda r: raw_folder(r, _truncate)),
    _c("prepare-empty-ply", None, "an empty (0-byte) PLY file (b.ply)", PREPARE_FOLDER, "b.ply",
       lambda r: raw_folder(r, lambda p: p.write_bytes(b""))),
    _c("prepare-ply-missing-z", None, "a PLY whose vertices have x and y but no z", PREPARE_FOLDER, "no x/y/z",
       lambda r: raw_folder(r, lambda p: write_cloud(p, fields=("x", "y")))),
    _c("prepare-all-points-nan", None, "the only scan has NaN coordinates everywhere",
       ("prepare", "folder", "raw", "-p", PROJ, "--classes", "a,b,c"), "empty",
       lambda r: _all_nan(r / "raw" / "a.ply")),
    _c("prepare-class-id-out-of-range", None, "a scan whose labels (7) are outside --classes a,b,c",
       PREPARE_FOLDER, "7", lambda r: raw_folder(r, lambda p: write_cloud(p, labels=np.full(400, 7)))),
    _c("prepare-no-class-list", None, "prepare folder of labelled scans without --classes",
       ("prepare", "folder", "raw", "-p", PROJ), "class list", lambda r: raw_folder(r)),
    _c("prepare-broken-class-file", None, "--classes names a YAML file that does not parse",
       ("prepare", "folder", "raw", "-p", PROJ, "--classes", "classes.yaml"), "classes.yaml",
       lambda r: (raw_folder(r), _class_yaml(r))),
    _c("prepare-raw-missing", None, "RAW folder does not exist",
       ("prepare", "folder", "nosuch", "-p", PROJ, "--classes", "a,b"), "no such folder"),
    _c("prepare-raw-empty", None, "RAW folder holds no scans", PREPARE_FOLDER, "no .ply",
       lambda r: (r / "raw").mkdir()),
    _c("prepare-into-foreign-folder", None, "-p names a non-empty folder that is not a project",
       ("prepare", "synthetic", "-p", PROJ, "--scenes", "2", "--points", "300"), "not a pcal project",
       _stray_file),
    _c("prepare-existing-project", "fresh", "prepare over an existing project without --force",
       ("prepare", "synthetic", "-p", PROJ, "--scenes", "2", "--points", "300"), "--force"),
    _c("prepare-bad-grid", None, "--grid 0", PREPARE_FOLDER + ("--grid", "0"), "--grid",
       lambda r: raw_folder(r)),
    _c("prepare-unknown-dataset", None, "an unknown dataset name",
       ("prepare", "scannet2", "raw", "-p", PROJ), "unknown dataset", lambda r: raw_folder(r)),
    _c("prepare-npy-garbage", None, "a .npy scan that is garbage bytes (b.npy)", PREPARE_FOLDER, "b.npy",
       lambda r: raw_folder(r, lambda p: garbage(p.with_suffix(".npy")))),
    _c("prepare-npy-wrong-shape", None, "a .npy scan of shape (10, 2)", PREPARE_FOLDER, "shape",
       lambda r: raw_folder(r, lambda p: np.save(p.with_suffix(".npy"), np.zeros((10, 2))))),
    _c("prepare-las-garbage", None, "a .las scan that is garbage bytes (b.las)", PREPARE_FOLDER, "b.las",
       lambda r: raw_folder(r, lambda p: garbage(p.with_suffix(".las")))),
    _c("prepare-split-file-missing", None, "--split-file names a file that does not exist",
       PREPARE_FOLDER + ("--split-file", "nosuch.yaml"), "nosuch.yaml", lambda r: raw_folder(r)),
    _c("prepare-label-field-missing", None, "--label-field names a field the scans do not have",
       PREPARE_FOLDER + ("--label-field", "nosuch"), "nosuch", lambda r: raw_folder(r)),
    _c("prepare-voxel-size-zero", None, "--voxel-size 0",
       ("prepare", "synthetic", "-p", PROJ, "--scenes", "1", "--points", "300", "--voxel-size", "0"),
       "--voxel-size"),
    _c("prepare-synthetic-points-zero", None, "prepare synthetic --points 0",
       ("prepare", "synthetic", "-p", PROJ, "--points", "0"), "--points"),

    # ---- the project folder and pcal.yaml ----
    _c("project-missing", None, "-p names a folder that does not exist", ("seed", "-p", "nosuch"),
       "no such project directory"),
    _c("project-not-a-project", None, "-p names a folder without pcal.yaml", ("seed", "-p", PROJ),
       "not a pcal project", lambda r: (r / PROJ).mkdir()),
    _c("project-not-given", None, "no -p and no $PCAL_PROJECT", ("seed",), "no project given"),
    _c("yaml-unknown-key", "fresh", "pcal.yaml has an unknown field (colour_map)", ("seed", "-p", PROJ),
       "colour_map", lambda r: edit_yaml(r, "ignore: -1", "ignore: -1\ncolour_map: 1")),
    _c("yaml-wrong-type", "fresh", "pcal.yaml has voxel_size: \"big\"", ("seed", "-p", PROJ), "voxel_size",
       lambda r: edit_yaml(r, "voxel_size: 0.05", 'voxel_size: "big"')),
    _c("yaml-grid-wrong-type", "fresh", "pcal.yaml has grid: \"big\"", ("seed", "-p", PROJ), "grid",
       lambda r: edit_yaml(r, "grid: null", 'grid: "big"')),
    _c("yaml-region-params-wrong-type", "fresh", "pcal.yaml has regions.params: 5 (not a mapping)",
       ("seed", "-p", PROJ), "regions",
       lambda r: edit_yaml(r, "params: {seed_resolution: 1.0, voxel_resolution: 0.1, min_size: 100}",
                           "params: 5")),
    _c("yaml-source-wrong-type", "fresh", "pcal.yaml has source: 3 (not a mapping)", ("seed", "-p", PROJ),
       "source", lambda r: edit_yaml(r, "source:\n  raw: null\n  options: {scenes: 4, points: 1200, seed: 0}",
                                     "source: 3")),
    _c("yaml-indoor-wrong-type", "fresh", "pcal.yaml has indoor: maybe (not a boolean)",
       ("seed", "-p", PROJ, "--budget", "20%"), "indoor", lambda r: edit_yaml(r, "indoor: true", "indoor: maybe")),
    _c("yaml-scene-in-two-splits", "fresh", "pcal.yaml lists room_000 in train and in test",
       ("seed", "-p", PROJ, "--budget", "20%"), "room_000",
       lambda r: edit_yaml(r, "test: [room_002", "test: [room_000")),
    _c("yaml-colors-wrong-count", "fresh", "pcal.yaml has one colour fewer than classes", ("seed", "-p", PROJ),
       "[r, g, b]", lambda r: edit_yaml(r, "- [0, 255, 0]\n", "")),
    _c("yaml-unsafe-scene-name", "fresh", "pcal.yaml names a scene ../room_000", ("seed", "-p", PROJ),
       "plain scene names", lambda r: edit_yaml(r, "train: [room_000", "train: [../room_000")),
    _c("yaml-empty", "fresh", "pcal.yaml is empty", ("seed", "-p", PROJ), "mapping",
       lambda r: (r / PROJ / "pcal.yaml").write_text("")),
    _c("yaml-not-yaml", "fresh", "pcal.yaml is not YAML", ("seed", "-p", PROJ), "invalid YAML",
       lambda r: (r / PROJ / "pcal.yaml").write_text("dataset: [synthetic\nclasses: : :\n")),
    _c("yaml-not-a-mapping", "fresh", "pcal.yaml is a YAML list", ("seed", "-p", PROJ), "mapping",
       lambda r: (r / PROJ / "pcal.yaml").write_text("- a\n- b\n")),
    _c("yaml-unknown-channel", "fresh", "pcal.yaml lists channels: [depth]", ("seed", "-p", PROJ), "channels",
       lambda r: edit_yaml(r, "channels: [rgb]", "channels: [depth]")),
    _c("scene-ply-corrupt", "fresh", "a project scene PLY replaced by garbage", ("seed", "-p", PROJ),
       "room_000.ply", lambda r: garbage(r / PROJ / "scenes" / "train" / "room_000.ply")),
    _c("scene-ply-missing", "fresh", "a scene listed in pcal.yaml was deleted", ("seed", "-p", PROJ),
       "room_001.ply", lambda r: (r / PROJ / "scenes" / "train" / "room_001.ply").unlink()),
    _c("ledger-corrupt", "fresh", "ledger.jsonl holds a line that is not JSON", ("seed", "-p", PROJ, "--budget", "20%"),
       "ledger.jsonl", lambda r: (r / PROJ / "ledger.jsonl").write_text("{not json\n")),
    _c("project-locked", "fresh", "another live process holds the project lock", ("seed", "-p", PROJ),
       "busy", _lock_held),

    # ---- seed: budgets, units, methods ----
    _c("budget-zero", "fresh", "--budget 0", ("seed", "-p", PROJ, "--budget", "0"), "positive"),
    _c("budget-zero-percent", "fresh", "--budget 0%", ("seed", "-p", PROJ, "--budget", "0%"), "(0, 100]"),
    _c("budget-negative", "fresh", "--budget -5", ("seed", "-p", PROJ, "--budget", "-5"), "budget"),
    _c("budget-over-100-percent", "fresh", "--budget 150%", ("seed", "-p", PROJ, "--budget", "150%"),
       "(0, 100]"),
    _c("budget-above-pool", "fresh", "--budget 999999 (more points than the training split)",
       ("seed", "-p", PROJ, "--budget", "999999"), "exceeds"),
    _c("budget-unparsable", "fresh", "--budget '3 percent'", ("seed", "-p", PROJ, "--budget", "3 percent"),
       "cannot read budget"),
    _c("budget-below-smallest-unit", "fresh", "--budget 1 (one point: smaller than any region)",
       ("seed", "-p", PROJ, "--budget", "1"), "smaller"),
    _c("budget-per-scene-with-scene-unit", "fresh", "--unit scene --budget 2/scene",
       ("seed", "-p", PROJ, "--unit", "scene", "--budget", "2/scene"), "per-scene"),
    _c("seed-unknown-unit", "fresh", "--unit blob", ("seed", "-p", PROJ, "--unit", "blob"), "unknown unit"),
    _c("seed-unknown-method", "fresh", "seed --method seedall", ("seed", "-p", PROJ, "--method", "seedall"),
       "seed method"),
    _c("seed-cell-zero", "fresh", "--unit cell --cell 0", ("seed", "-p", PROJ, "--unit", "cell", "--cell", "0"),
       "cell"),
    _c("seedal-region-unit", "fresh", "seed --method seedal --unit region",
       ("seed", "-p", PROJ, "--method", "seedal", "--unit", "region"), "whole scenes"),
    _c("seedal-budget-below-any-scene", "fresh", "seed --method seedal --budget 1% (every scene is larger)",
       ("seed", "-p", PROJ, "--method", "seedal", "--budget", "1%", "--solver", "greedy"), "budget"),
    _c("seedal-images-missing-file", "fresh", "--features images:DIR without DIR/room_001.npy",
       ("seed", "-p", PROJ, "--method", "seedal", "--features", "images:images", "--budget", "60%"),
       "room_001", _image_features),
    _c("seedal-bad-features", "fresh", "--features pixels", ("seed", "-p", PROJ, "--method", "seedal",
                                                             "--features", "pixels"), "--features"),
    _c("seedal-model-not-a-checkpoint", "fresh", "--features model:PATH naming a garbage file",
       ("seed", "-p", PROJ, "--method", "seedal", "--features", "model:junk.pt", "--budget", "60%"),
       "junk.pt", lambda r: garbage(r / "junk.pt")),
    _c("seedal-unknown-solver", "fresh", "seed --method seedal --solver cplex",
       ("seed", "-p", PROJ, "--method", "seedal", "--solver", "cplex", "--budget", "60%"), "cplex"),
    _c("seedal-per-scene-budget", "fresh", "seed --method seedal --budget 2/scene",
       ("seed", "-p", PROJ, "--method", "seedal", "--budget", "2/scene"), "whole scenes"),
    _c("budget-below-smallest-scene", "fresh", "seed --unit scene --budget 1% (every scene is larger)",
       ("seed", "-p", PROJ, "--unit", "scene", "--budget", "1%"), "smallest scene"),
    _c("seed-force-after-training", "trained", "seed --force when round 0 already has a model",
       ("seed", "-p", PROJ, "--force"), "--force never deletes"),

    # ---- train / evaluate ----
    _c("train-full-and-round", "trained", "train --full --round 0", ("train", "-p", PROJ, "--full", "--round", "0"),
       "exclude"),
    _c("train-unknown-backbone", "trained", "--backbone resnet",
       ("train", "-p", PROJ, "--backbone", "resnet", "--device", "cpu"), "unknown backbone"),
    _c("train-unknown-device", "trained", "train --device tpu", ("train", "-p", PROJ, "--device", "tpu"),
       "unknown device"),
    _c("train-unknown-optimizer", "trained", "--optimizer rmsprop",
       ("train", "-p", PROJ, "--optimizer", "rmsprop"), "optimizer"),
    _c("train-steps-zero", "trained", "--steps 0", ("train", "-p", PROJ, "--steps", "0"), "--steps"),
    _c("train-cr-zero", "trained", "--cr 0", ("train", "-p", PROJ, "--cr", "0"), "--cr"),
    _c("train-unknown-semi", "trained", "--semi fixmatch", ("train", "-p", PROJ, "--semi", "fixmatch"), "semi"),
    _c("train-missing-round", "trained", "train --round 7 (no such round)", ("train", "-p", PROJ, "--round", "7"),
       "does not exist"),
    _c("train-steps-not-a-number", "trained", "--steps many (not an integer)",
       ("train", "-p", PROJ, "--steps", "many"), "Invalid value for '--steps'"),
    _c("train-unknown-option", "trained", "an option train does not have (--epoch instead of --epochs)",
       ("train", "-p", PROJ, "--epoch", "2"), "--epoch"),
    _c("labels-wrong-length", "trained", "rounds/r000/labels/<scene>.npz replaced by the labels of 100 points, "
       "then train", ("train", "-p", PROJ, "--cr", "0.125", "--steps", "1", "--device", "cpu"), "expected 1200",
       lambda r: (untrain(r), write_label_file(label_file(r), np.zeros(100, dtype=np.int16)))),
    _c("labels-not-npy", "trained", "a label file that is not a numpy archive (garbage bytes), then train",
       ("train", "-p", PROJ, "--cr", "0.125", "--steps", "1", "--device", "cpu"), "label file",
       lambda r: (untrain(r), garbage(label_file(r)))),
    _c("labels-class-out-of-range", "trained", "a label file holding class id 99, then train",
       ("train", "-p", PROJ, "--cr", "0.125", "--steps", "1", "--device", "cpu"), "outside",
       lambda r: (untrain(r), write_label_file(label_file(r), np.full(1200, 99, dtype=np.int16)))),
    _c("labels-float", "trained", "an old-format label file (dense <scene>.npy) of floats, then train",
       ("train", "-p", PROJ, "--cr", "0.125", "--steps", "1", "--device", "cpu"), "integer",
       lambda r: (untrain(r), _legacy_label_file(label_file(r), np.zeros(1200, dtype=np.float32)))),
    _c("one-point-scene-train", None, "a scan of a single point, the only labelled scene of round 0, then train",
       ("train", "-p", PROJ, "--cr", "0.125", "--steps", "1", "--device", "cpu"), "", _one_point_project),
    _c("warm-start-other-width", "looped", "train --warm-start with another --cr than the previous round's",
       ("train", "-p", PROJ, "--round", "1", "--warm-start", "--cr", "0.25", "--steps", "1", "--device", "cpu"),
       "--warm-start"),
    _c("warm-start-other-backbone", "looped", "train --warm-start with another --backbone",
       ("train", "-p", PROJ, "--round", "1", "--warm-start", "--backbone", "spvcnn", "--cr", "0.125",
        "--steps", "1", "--device", "cpu"), "--warm-start"),
    _c("evaluate-train-split", "trained", "evaluate --split train", ("evaluate", "-p", PROJ, "--split", "train",
                                                                     "--device", "cpu"), "val or test"),
    _c("evaluate-no-rounds", "fresh", "evaluate before any round exists", ("evaluate", "-p", PROJ), "no labelling"),
    _c("evaluate-no-full-model", "trained", "evaluate --full before train --full",
       ("evaluate", "-p", PROJ, "--full", "--device", "cpu"), "no checkpoint"),

    # ---- score ----
    _c("score-unknown-scorer", "trained", "--scorer entropie", ("score", "-p", PROJ, "--scorer", "entropie"),
       "entropie"),
    _c("score-unknown-unit", "trained", "score --unit blob", ("score", "-p", PROJ, "--unit", "blob"),
       "unknown unit"),
    _c("score-unknown-device", "trained", "score --device tpu", ("score", "-p", PROJ, "--device", "tpu"),
       "unknown device"),
    _c("score-shard-out-of-range", "trained", "--shard 3/2", ("score", "-p", PROJ, "--shard", "3/2",
                                                              "--device", "cpu"), "--shard"),
    _c("score-shard-unparsable", "trained", "--shard x", ("score", "-p", PROJ, "--shard", "x", "--device", "cpu"),
       "--shard"),
    _c("score-unknown-option", "trained", "-o nosuch=1 (the scorer has no such option)",
       ("score", "-p", PROJ, "-o", "nosuch=1", "--device", "cpu"), "nosuch"),
    _c("score-option-wrong-type", "trained", "--scorer redal -o k=big (k is an integer)",
       ("score", "-p", PROJ, "--scorer", "redal", "-o", "k=big", "--device", "cpu"), "k"),
    _c("score-option-not-key-value", "trained", "-o decay (no =VALUE)",
       ("score", "-p", PROJ, "-o", "decay", "--device", "cpu"), "KEY=VALUE"),
    _c("score-unknown-aggregate", "trained", "--aggregate median",
       ("score", "-p", PROJ, "--aggregate", "median", "--device", "cpu"), "aggregate"),
    _c("score-keep-zero", "trained", "--keep 0", ("score", "-p", PROJ, "--keep", "0", "--device", "cpu"), "--keep"),
    _c("score-cell-zero", "trained", "score --unit cell --cell 0",
       ("score", "-p", PROJ, "--unit", "cell", "--cell", "0", "--device", "cpu"), "cell"),
    _c("score-option-wrong-tuple", "trained", "--scorer hmmu -o levels=a,b (levels are numbers)",
       ("score", "-p", PROJ, "--scorer", "hmmu", "-o", "levels=a,b", "--device", "cpu"), "levels"),
    _c("score-config-corrupt", "selected", "rounds/r000/scores/config.json is not JSON, then score",
       ("score", "-p", PROJ, "--device", "cpu"), "config.json",
       lambda r: (r / PROJ / "rounds" / "r000" / "scores" / "config.json").write_text("[")),
    _c("score-corrupt-checkpoint", "trained", "rounds/r000/model.pt replaced by garbage, then score",
       ("score", "-p", PROJ, "--device", "cpu"), "model.pt",
       lambda r: garbage(r / PROJ / "rounds" / "r000" / "model.pt")),
    _c("score-before-train", "trained", "score a round that has no model", ("score", "-p", PROJ, "--device", "cpu"),
       "no checkpoint", untrain),
    _c("score-other-settings", "selected", "score again with another scorer without --force",
       ("score", "-p", PROJ, "--scorer", "entropy", "--device", "cpu"), "--force"),

    # ---- select ----
    _c("select-before-score", "trained", "pcal select before pcal score", ("select", "-p", PROJ), "pcal score"),
    _c("select-unknown-selector", "selected", "--selector topn",
       ("select", "-p", PROJ, "--selector", "topn", "--force"), "topn"),
    _c("select-needs-features", "selected", "--selector kcenter on scores without features",
       ("select", "-p", PROJ, "--selector", "kcenter", "--force"), "features"),
    _c("select-budget-above-pool", "selected", "select --budget 100000",
       ("select", "-p", PROJ, "--budget", "100000", "--force"), "exceeds"),
    _c("select-option-wrong-type", "selected", "select --selector diversity -o decay=lots",
       ("select", "-p", PROJ, "--selector", "diversity", "-o", "decay=lots", "--force"), "decay"),
    _c("select-per-scene-with-kcenter", "selected", "select --budget 2/scene --selector kcenter",
       ("select", "-p", PROJ, "--budget", "2/scene", "--selector", "kcenter", "--force"), "per-scene"),
    _c("select-scores-corrupt", "selected", "a scores/<scene>.npz replaced by garbage, then select",
       ("select", "-p", PROJ, "--force"), "room_000.npz",
       lambda r: garbage(r / PROJ / "rounds" / "r000" / "scores" / "room_000.npz")),
    _c("select-unknown-option", "selected", "select -o nosuch=1", ("select", "-p", PROJ, "-o", "nosuch=1",
                                                                     "--force"), "nosuch"),

    # ---- label ----
    _c("label-before-select", "trained", "pcal label --oracle before pcal select", ("label", "-p", PROJ, "--oracle"),
       "queries"),
    _c("label-how-missing", "selected", "pcal label without --oracle or a subcommand", ("label", "-p", PROJ),
       "--oracle"),
    _c("label-queries-corrupt", "selected", "queries.json cut short, then label --oracle",
       ("label", "-p", PROJ, "--oracle"), "queries.json", _broken_queries),
    _c("import-scene-not-queried", "selected", "an import folder holding a file for a scene not in the query",
       ("label", "-p", PROJ, "import", "exp"), "room_003", _second_export),
    _c("import-no-manifest-no-files", "selected", "an import folder without manifest or labelled files",
       ("label", "-p", PROJ, "import", "exp"), "exp", lambda r: (r / "exp").mkdir()),
    _c("import-folder-missing", "selected", "label import of a folder that does not exist",
       ("label", "-p", PROJ, "import", "nosuch"), "nosuch"),
    _c("import-unlabelled", "selected", "label import of the export as it was written (nobody labelled it)",
       ("label", "-p", PROJ, "import", "exp"), "no class", export_round),
    _c("import-missing-round", "selected", "label --round 5 import (no such round)",
       ("label", "-p", PROJ, "--round", "5", "import", "exp"), "round 5", lambda r: (r / "exp").mkdir()),
    _c("export-out-is-a-file", "selected", "label export --out naming a file",
       ("label", "-p", PROJ, "export", "--out", "notes.txt"), "not a folder",
       lambda r: (r / "notes.txt").write_text("my notes\n")),
    _c("export-unknown-format", "selected", "label export --format xyz",
       ("label", "-p", PROJ, "export", "--out", "exp", "--format", "xyz"), "xyz"),
    _c("export-into-busy-folder", "selected", "label export into a folder that holds other point clouds",
       ("label", "-p", PROJ, "export", "--out", "exp"), "exp",
       lambda r: write_cloud(r / "exp" / "scan.ply")),

    # ---- round / compare / report ----
    _c("round-unknown-method", "trained", "round --method marginn", ("round", "-p", PROJ, "--method", "marginn"),
       "did you mean 'margin'"),
    _c("round-zero-rounds", "trained", "round --rounds 0", ("round", "-p", PROJ, "--rounds", "0"), "--rounds"),
    _c("round-unknown-option", "trained", "round --method margin -o decay=0.9 (margin has no decay)",
       ("round", "-p", PROJ, "-o", "decay=0.9"), "decay"),
    _c("round-unparsable-budget", "trained", "round --budget '3 percent'",
       ("round", "-p", PROJ, "--budget", "3 percent", "--cr", "0.125", "--steps", "1", "--device", "cpu"),
       "cannot read budget"),
    _c("round-unknown-unit", "trained", "round --unit blob",
       ("round", "-p", PROJ, "--unit", "blob", "--cr", "0.125", "--steps", "1", "--device", "cpu"),
       "unknown unit"),
    _c("round-unparsable-seed-budget", "fresh", "round --seed-budget '3 percent' on a project without round 0",
       ("round", "-p", PROJ, "--seed-budget", "3 percent", "--device", "cpu"), "cannot read budget"),
    _c("round-unknown-device-before-seed", "fresh", "round --device tpu on a project without round 0",
       ("round", "-p", PROJ, "--device", "tpu", "--seed-budget", "20%"), "unknown device"),
    _c("compare-method-twice", "fresh", "compare --methods margin,margin",
       ("compare", "-p", PROJ, "--methods", "margin,margin", "--seeds", "1", "--rounds", "1", "--steps", "1",
        "--cr", "0.125", "--device", "cpu"), "twice"),
    _c("compare-unknown-method", "fresh", "compare --methods random,marign",
       ("compare", "-p", PROJ, "--methods", "random,marign", "--seeds", "1", "--rounds", "1", "--steps", "1",
        "--cr", "0.125", "--device", "cpu"), "marign"),
    _c("compare-zero-seeds", "fresh", "compare --seeds 0", ("compare", "-p", PROJ, "--seeds", "0"), "--seeds"),
    _c("compare-unknown-device", "fresh", "compare --device tpu",
       ("compare", "-p", PROJ, "--methods", "random", "--seeds", "1", "--rounds", "1", "--steps", "1",
        "--cr", "0.125", "--seed-budget", "20%", "--device", "tpu"), "unknown device"),
    _c("compare-unknown-seed-unit", "fresh", "compare --seed-unit blob",
       ("compare", "-p", PROJ, "--methods", "random", "--seeds", "1", "--rounds", "1", "--steps", "1",
        "--cr", "0.125", "--seed-unit", "blob", "--device", "cpu"), "unknown unit"),
    _c("compare-unknown-seed-method", "fresh", "compare --seed-method bogus",
       ("compare", "-p", PROJ, "--seed-method", "bogus"), "--seed-method"),
    _c("compare-unparsable-budget", "fresh", "compare --budget '3 percent'",
       ("compare", "-p", PROJ, "--methods", "random", "--seeds", "1", "--rounds", "1", "--steps", "1",
        "--cr", "0.125", "--seed-budget", "20%", "--budget", "3 percent", "--device", "cpu"), "cannot read budget"),
    _c("compare-unparsable-seed-budget", "fresh", "compare --seed-budget '3 percent'",
       ("compare", "-p", PROJ, "--methods", "random", "--seeds", "1", "--rounds", "1", "--steps", "1",
        "--cr", "0.125", "--seed-budget", "3 percent", "--device", "cpu"), "cannot read budget"),
    _c("report-metrics-corrupt", "trained", "rounds/r000/metrics.json is not JSON, then report",
       ("report", "-p", PROJ), "metrics.json", lambda r: (r / PROJ / "rounds" / "r000" / "metrics.json").write_text("{")),
    _c("report-out-is-a-file", "selected", "report --show-queries room_000 --out naming a file",
       ("report", "-p", PROJ, "--show-queries", "room_000", "--out", "notes.txt"), "notes.txt",
       lambda r: (r / "notes.txt").write_text("my notes\n")),
    _c("report-not-a-project", None, "report of a folder that is not a project", ("report", "notaproject"),
       "notaproject", lambda r: (r / "notaproject").mkdir()),
    _c("report-unknown-scene", "selected", "report --show-queries of a scene that does not exist",
       ("report", "-p", PROJ, "--show-queries", "room_999"), "room_999"),
    _c("report-missing-round", "trained", "report --round 9", ("report", "-p", PROJ, "--round", "9"), "9"),
    # ---- options added with mixed precision, WSegPC's tag drop and image features, JoPro's oracle seed ----
    _c("train-unknown-precision", "trained", "train --precision fp8",
       ("train", "-p", PROJ, "--precision", "fp8", "--device", "cpu"), "unknown --precision"),
    _c("train-fp16-on-cpu", "trained", "train --precision fp16 on a CPU",
       ("train", "-p", PROJ, "--precision", "fp16", "--cr", "0.125", "--steps", "1", "--device", "cpu", "--force"),
       "needs a CUDA device"),
    _c("train-tag-drop-out-of-range", "trained", "train --tag-drop 2",
       ("train", "-p", PROJ, "--tag-drop", "2", "--device", "cpu"), "--tag-drop"),
    _c("train-image-features-supervised", "trained", "train --image-features DIR without a scene-tag recipe",
       ("train", "-p", PROJ, "--image-features", "feats", "--device", "cpu"), "scene-tag recipes",
       lambda r: (r / "feats").mkdir()),
    _c("seed-oracle-balanced-region", "fresh", "seed --method oracle-balanced --unit region",
       ("seed", "-p", PROJ, "--method", "oracle-balanced", "--unit", "region", "--budget", "1%"), "--unit point"),
    _c("prepare-synthetic-unknown-layout", None, "prepare synthetic --layout open-plan",
       ("prepare", "synthetic", "-p", PROJ, "--scenes", "1", "--points", "300", "--layout", "open-plan"),
       "--layout"),
    _c("prepare-layout-not-synthetic", None, "prepare folder ... --layout typed (a synthetic-only option)",
       PREPARE_FOLDER + ("--layout", "typed"), "only to synthetic", lambda r: raw_folder(r)),
    _c("compare-max-points-zero", "fresh", "compare --max-points 0",
       ("compare", "-p", PROJ, "--max-points", "0"), "--max-points must be positive"),
    # ---- data import: channels, class tables, hold-out areas, duplicate YAML keys ----
    _c("prepare-unknown-channel", None, "prepare folder --channels depth", PREPARE_FOLDER + ("--channels", "depth"),
       "unknown channel 'depth'", lambda r: raw_folder(r)),
    _c("prepare-file-lacks-channel", None, "--channels rgb, but b.ply has no colours",
       PREPARE_FOLDER + ("--channels", "rgb"), "b.ply: no rgb", lambda r: raw_folder(r, _colourless)),
    _c("prepare-channels-not-folder", None, "prepare synthetic --channels rgb (a folder-only option)",
       ("prepare", "synthetic", "-p", PROJ, "--scenes", "1", "--points", "300", "--channels", "rgb"),
       "only to folder"),
    _c("prepare-bad-holdout-area", None, "--holdout-area 'x>=650' (not a form it knows)",
       PREPARE_FOLDER + ("--holdout-area", "x>=650"), "--holdout-area", lambda r: raw_folder(r)),
    _c("prepare-holdout-fraction-one", None, "--holdout-area 1 (the whole scene)",
       PREPARE_FOLDER + ("--holdout-area", "1"), "strictly between 0 and 1", lambda r: raw_folder(r)),
    _c("prepare-asprs-unknown-code", None, "--classes asprs on a scan holding code 64 (not an ASPRS class)",
       ("prepare", "folder", "raw", "-p", PROJ, "--classes", "asprs", "--regions", "cells"), "--ignore-ids 64",
       lambda r: raw_folder(r, lambda p: write_cloud(p, labels=np.full(400, 64)))),
    _c("prepare-bad-ignore-ids", None, "--ignore-ids 64..67", PREPARE_FOLDER + ("--ignore-ids", "64..67"),
       "--ignore-ids", lambda r: raw_folder(r)),
    _c("prepare-class-file-duplicate-key", None, "a class file giving raw id 2 twice",
       ("prepare", "folder", "raw", "-p", PROJ, "--classes", "classes.yaml"), "line 4: duplicate key 2",
       lambda r: (raw_folder(r), (r / "classes.yaml").write_text("classes: [a, b]\nids:\n  2: a\n  2: b\n"))),
    _c("prepare-split-file-duplicate-key", None, "a YAML split file naming scene a twice",
       PREPARE_FOLDER + ("--split-file", "split.yaml"), "line 2: duplicate key 'a'",
       lambda r: (raw_folder(r), (r / "split.yaml").write_text("a: train\na: test\n"))),
    _c("yaml-duplicate-key", "fresh", "pcal.yaml gives voxel_size twice", ("seed", "-p", PROJ),
       "duplicate key 'voxel_size'", lambda r: edit_yaml(r, "voxel_size: 0.05", "voxel_size: 0.05\nvoxel_size: 0.1")),
    # ---- labelling in parts, damaged label files ----
    _c("import-partial-nothing-labelled", "selected", "label import --partial of the export as it was written",
       ("label", "-p", PROJ, "import", "exp", "--partial"), "nothing imported: no query point has a class",
       export_round),
    _c("import-batch-superseded", "looped", "label import of round 0's export after the oracle made round 1",
       ("label", "-p", PROJ, "import", "exp"), "exported for round 0's queries but the project is at round 1",
       export_round),
    _c("labels-truncated", "trained", "a label file cut short (half its bytes), then train",
       ("train", "-p", PROJ, "--cr", "0.125", "--steps", "1", "--device", "cpu"),
       "round 0 is the latest and not closed: delete proj/rounds/r000 and run 'pcal seed -p proj",
       lambda r: (untrain(r), _cut_short(label_file(r)))),
]


# -- running a case ---------------------------------------------------------------------------------

def snapshot(root: Path) -> tuple[dict[str, bytes], list[str]]:
    """Every file (content) and every folder under ``root``, the lock file aside."""
    files = {k: v for k, v in tree_bytes(root).items() if Path(k).name != LOCK_NAME}
    folders = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir())
    return files, folders


def prepare_case(case: Case, bases: dict[str, Path], root: Path) -> list[str]:
    """Copy the case's project into ``root/proj``, set up the mistake, return the command line."""
    root.mkdir(parents=True, exist_ok=True)
    if case.base is not None:
        shutil.copytree(bases[case.base], root / PROJ)
    return case.setup(root)


def test_catalogue_is_large_and_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 35


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_fails_cleanly(case: Case, bases, pcal, tmp_path, monkeypatch):
    root = tmp_path / "case"
    monkeypatch.delenv("PCAL_PROJECT", raising=False)
    args = prepare_case(case, bases, root)
    monkeypatch.chdir(root)
    before = snapshot(root)
    result = pcal(*args)
    after = snapshot(root)
    shown = f"pcal {' '.join(args)}\nexit {result.code}\nstderr:\n{result.err}"
    assert "Traceback" not in result.err + result.out, shown
    assert result.code == 2, shown
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, shown
    assert lines[0].startswith("error: "), shown
    assert case.fragment in lines[0], shown
    added = sorted(set(after[0]) - set(before[0])) + sorted(set(after[1]) - set(before[1]))
    removed = sorted(set(before[0]) - set(after[0])) + sorted(set(before[1]) - set(after[1]))
    changed = sorted(k for k in set(before[0]) & set(after[0]) if before[0][k] != after[0][k])
    assert not (added or removed or changed), f"{shown}\nwritten: {added}\nremoved: {removed}\nchanged: {changed}"


def test_nan_coordinates_are_dropped_not_refused(pcal, tmp_path, monkeypatch):
    """NaN / inf coordinates are not a mistake: prepare drops those points and says how many."""
    raw = tmp_path / "raw"
    path = write_cloud(raw / "a.ply", n=300, seed=3)
    ply = PlyData.read(str(path))
    data = ply["vertex"].data.copy()
    data["x"][[5, 6]] = np.nan
    data["z"][9] = np.inf
    PlyData([PlyElement.describe(data, "vertex")], text=False, byte_order="<").write(str(path))
    monkeypatch.chdir(tmp_path)
    result = pcal(*PREPARE_FOLDER)
    assert result.code == 0, result.err
    assert "a: dropped 3 point(s) with NaN or infinite coordinates" in result.err
    assert "Traceback" not in result.err
    assert PlyData.read(str(tmp_path / PROJ / "scenes" / "train" / "a.ply"))["vertex"].count == 297
