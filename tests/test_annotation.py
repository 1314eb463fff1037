"""A person in the loop: export queries, label the files with other tools, import them back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from pcal_cli.annotation import NOT_ASKED, QUERY, export_queries, import_labels, query_points
from pcal_cli.annotation.export import query_scenes
from pcal_cli.annotation.formats import FLOAT32_EXACT, combine_pid, encode_pid
from pcal_cli.atomic import sha256_file
from pcal_cli.atomic import write_json
from pcal_cli.check import PROBLEM, check_project
from pcal_cli.data.ply import read_ply, write_ply
from pcal_cli.errors import PcalError
from pcal_cli.label_files import write_label_file
from pcal_cli.prepare import PrepareOptions, prepare_project
from pcal_cli.project import Project
from pcal_cli.rounds import commit_labels, load_labels, read_ledger
from pcal_cli.units import unit_ids

from testing.faults import check_invariants

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cloudcompare_labelling.sh"
TRAIN = ("room_000", "room_001")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("annotation") / "proj"
    prepare_project("synthetic", None, root, {"scenes": 3, "points": 1500},
                    PrepareOptions(regions="cells", region_params={"cell": 0.5}))
    return root


def _project(prepared: Path, tmp_path: Path, unit: str = "region", offset: bool = False) -> Project:
    """A copy of the prepared project with random round-0 labels and a hand-written queries.json."""
    root = tmp_path / "proj"
    shutil.copytree(prepared, root)
    project = Project.open(root)
    rng = np.random.default_rng(0)
    entries = []
    for name in TRAIN:
        path = project.scene_path("train", name)
        scene = read_ply(path, name=name)
        if offset and name == TRAIN[0]:  # a georeferenced scene
            scene.offset = np.array([500000.0, 4200000.0, 120.0])
            write_ply(path, scene)
        known = np.where(rng.random(len(scene)) < 0.05, scene.label, -1).astype(np.int16)
        write_label_file(project.round_dir(0) / "labels" / f"{name}.npz", known)
        ids = unit_ids(scene, unit)
        if unit == "region":
            # three regions, one of them holding known points (those are not asked again)
            picked = list(rng.choice(np.unique(ids), 2, replace=False)) + [int(ids[np.flatnonzero(known >= 0)[0]])]
        else:
            picked = list(rng.choice(len(scene), 40, replace=False)) + [int(np.flatnonzero(known >= 0)[0])]
        entries += [{"scene": name, "unit": int(u), "points": int((ids == u).sum()), "score": 1.0, "rank": i}
                    for i, u in enumerate(picked)]
    write_json(project.round_dir(0) / "queries.json", {
        "round": 0, "unit": unit, "cell": 0.25, "scorer": "random", "selector": "top",
        "budget_points": 10**6, "spent_points": 0, "queries": entries})
    return project


def _truth(project: Project) -> dict[str, np.ndarray]:
    return {name: read_ply(project.scene_path("train", name)).label.astype(np.int64) for name in TRAIN}


def _oracle(project: Project) -> dict[str, np.ndarray]:
    """What the oracle gives: round-0 labels plus ground truth on the query points."""
    truth, masks = _truth(project), query_points(project, 0, None)
    expected = {}
    for name in TRAIN:
        labels = load_labels(project, 0, name, len(truth[name])).copy()
        labels[masks[name]] = truth[name][masks[name]]
        expected[name] = labels
    return expected


def _fill_ply(path: Path, truth: np.ndarray, units=None) -> None:
    """Label the query points (of ``units`` only, when given) with plyfile only, as a person's tool
    would, and save binary PLY."""
    ply = PlyData.read(str(path), mmap=False)
    v = ply["vertex"].data
    query = v["scalar_query"] == 1
    if units is not None:
        query &= np.isin(v["scalar_unit"], units)
    v["scalar_Classification"][query] = truth[v["scalar_pid"][query].astype(np.int64)]
    PlyData([PlyElement.describe(v, "vertex")], text=False, byte_order="<").write(str(path))


def _fill_all(folder: Path, project: Project) -> None:
    truth = _truth(project)
    for name in TRAIN:
        _fill_ply(folder / f"{name}.ply", truth[name])


def _assert_imported(project: Project, commit, expected: dict[str, np.ndarray]) -> None:
    assert commit.round == 1
    for name in TRAIN:
        assert np.array_equal(load_labels(project, 1, name, len(expected[name])), expected[name])
    entries = [e for e in read_ledger(project) if e["round"] == 1]
    assert entries and {e["source"] for e in entries} == {"import"}
    assert sum(e["points"] for e in entries) == commit.points == sum(int(m.sum()) for m in
                                                                     query_points(project, 0, None).values())


# -- round trips --------------------------------------------------------------------------------
@pytest.mark.parametrize("unit", ["region", "point"])
def test_ply_round_trip_matches_the_oracle(prepared, tmp_path, unit):
    project = _project(prepared, tmp_path, unit)
    manifest = export_queries(project, 0, tmp_path / "out")
    assert manifest["round"] == 0 and manifest["unit"] == unit
    assert manifest["reserved"] == {"query": QUERY, "not_asked": NOT_ASKED}
    masks = query_points(project, 0, None)
    for name in TRAIN:
        v = PlyData.read(str(tmp_path / "out" / f"{name}.ply"), mmap=False)["vertex"].data
        known = load_labels(project, 0, name, len(v))
        assert v.dtype["x"] == np.float32 and v.dtype["scalar_pid"] == np.float32
        assert np.array_equal(v["scalar_query"] == 1, masks[name])
        assert np.array_equal(v["scalar_Classification"][known >= 0], known[known >= 0])
        assert set(np.unique(v["scalar_Classification"][known < 0])) <= {QUERY, NOT_ASKED}
        assert (v["scalar_Classification"][masks[name]] == QUERY).all()
        assert manifest["scenes"][name]["query_points"] == int(masks[name].sum()) > 0
    _fill_all(tmp_path / "out", project)
    commit = import_labels(project, 0, tmp_path / "out")
    _assert_imported(project, commit, _oracle(project))
    record = json.loads((project.round_dir(1) / "labelling.json").read_text())
    assert record["source"] == "import" and record["import"]["files"]["room_000"]["matched_by"] == "pid"


def test_ascii_float64_reordered_without_pid(prepared, tmp_path):
    project = _project(prepared, tmp_path)
    export_queries(project, 0, tmp_path / "out")
    truth, rng = _truth(project), np.random.default_rng(1)
    for name in TRAIN:
        path = tmp_path / "out" / f"{name}.ply"
        v = PlyData.read(str(path), mmap=False)["vertex"].data
        labels = v["scalar_Classification"].astype(np.float32)
        query = v["scalar_query"] == 1
        labels[query] = truth[name][v["scalar_pid"][query].astype(np.int64)]
        order = rng.permutation(len(v))
        out = np.empty(len(v), dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("scalar_Classification", "f4")])
        for axis in "xyz":
            out[axis] = v[axis][order]
        out["scalar_Classification"] = labels[order]
        PlyData([PlyElement.describe(out, "vertex")], text=True).write(str(path))
    commit = import_labels(project, 0, tmp_path / "out")
    _assert_imported(project, commit, _oracle(project))
    record = json.loads((project.round_dir(1) / "labelling.json").read_text())
    assert record["import"]["files"]["room_001"]["matched_by"] == "coordinates"


def test_las_round_trip_with_a_georeferenced_scene(prepared, tmp_path):
    laspy = pytest.importorskip("laspy")
    project = _project(prepared, tmp_path, offset=True)
    manifest = export_queries(project, 0, tmp_path / "out", fmt="las")
    truth = _truth(project)
    for name in TRAIN:
        path = tmp_path / "out" / manifest["scenes"][name]["file"]
        las = laspy.read(str(path))
        assert las.header.version.minor == 4 and las.point_format.id == 7
        query = np.asarray(las["query"]) == 1
        pid = np.asarray(las["pid"]).astype(np.int64)
        assert (np.asarray(las.classification)[query] == QUERY).all()
        if name == TRAIN[0]:
            assert np.asarray(las.x).min() > 499000  # absolute coordinates
        classification = np.asarray(las.classification).copy()
        classification[query] = truth[name][pid[query]]
        las.classification = classification
        las.write(str(path))
    commit = import_labels(project, 0, tmp_path / "out")
    _assert_imported(project, commit, _oracle(project))


def test_a_file_with_only_the_query_points_is_enough(prepared, tmp_path):
    project = _project(prepared, tmp_path)
    export_queries(project, 0, tmp_path / "out")
    _fill_all(tmp_path / "out", project)
    path = tmp_path / "out" / "room_000.ply"
    v = PlyData.read(str(path), mmap=False)["vertex"].data
    PlyData([PlyElement.describe(v[v["scalar_query"] == 1], "vertex")]).write(str(path))
    _assert_imported(project, import_labels(project, 0, tmp_path / "out"), _oracle(project))


def test_manifest_checksums_match_the_files(prepared, tmp_path):
    project = _project(prepared, tmp_path)
    manifest = export_queries(project, 0, tmp_path / "out", predictions={"room_000": np.zeros(1500, np.int64)},
                              scores={"room_001": np.linspace(0, 1, 1500)})
    assert manifest == json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [c["name"] for c in manifest["classes"]] == project.config.classes
    for name, entry in manifest["scenes"].items():
        assert entry["sha256"] == sha256_file(tmp_path / "out" / entry["file"])
        assert entry["points"] == 1500
    fields = PlyData.read(str(tmp_path / "out" / "room_000.ply"), mmap=False)["vertex"].data.dtype.names
    assert "scalar_pred" in fields and "scalar_unit" in fields and "red" in fields
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left
    assert "scalar_score" in PlyData.read(str(tmp_path / "out" / "room_001.ply"), mmap=False)["vertex"].data.dtype.names
    export_queries(project, 0, tmp_path / "out")  # the same round again: rewritten
    project.round_dir(1).mkdir()
    write_json(project.round_dir(1) / "queries.json", {"round": 1, "unit": "point", "queries": [
        {"scene": "room_000", "unit": 3}]})
    with pytest.raises(PcalError, match="holds the export of round 0"):
        export_queries(project, 1, tmp_path / "out")


def test_pid_survives_float32_up_to_50_million_points():
    pid = np.array([0, FLOAT32_EXACT - 1, FLOAT32_EXACT, FLOAT32_EXACT + 1, 49_999_999])
    assert int(np.float32(FLOAT32_EXACT + 1)) != FLOAT32_EXACT + 1  # why one float32 column is not enough
    columns = {k: v.astype(np.float32) for k, v in encode_pid(pid, 50_000_000).items()}
    assert set(columns) == {"pid_hi", "pid_lo"}
    assert np.array_equal(combine_pid(columns["pid_hi"], columns["pid_lo"]), pid)
    assert set(encode_pid(pid[:2], FLOAT32_EXACT)) == {"pid"}


# -- refusals: one clear error, nothing written -----------------------------------------------------
def _edit(path: Path, change) -> None:
    ply = PlyData.read(str(path), mmap=False)
    v = ply["vertex"].data
    change(v)
    PlyData([PlyElement.describe(v, "vertex")], text=False, byte_order="<").write(str(path))


def _first(v, where):
    return int(np.flatnonzero(where)[0])


def _leave_reserved(v):
    v["scalar_Classification"][_first(v, v["scalar_query"] == 1)] = QUERY


def _out_of_range(v):
    v["scalar_Classification"][_first(v, v["scalar_query"] == 1)] = 13


def _duplicate_pid(v):
    v["scalar_pid"][1] = v["scalar_pid"][0]


def _change_known(v):
    i = _first(v, (v["scalar_Classification"] < NOT_ASKED) & (v["scalar_query"] == 0))
    v["scalar_Classification"][i] = (v["scalar_Classification"][i] + 1) % 13


def _erase_known(v):
    v["scalar_Classification"][_first(v, (v["scalar_Classification"] < NOT_ASKED) & (v["scalar_query"] == 0))] = QUERY


def _label_outside(v):
    v["scalar_Classification"][_first(v, v["scalar_Classification"] == NOT_ASKED)] = 2


CORRUPTIONS = {
    "reserved": (_leave_reserved, "have no class"),
    "out_of_range": (_out_of_range, "not in 0..12"),
    "duplicate_pid": (_duplicate_pid, "appear more than once"),
    "changed_known": (_change_known, "changed class outside the query"),
    "erased_known": (_erase_known, "erased"),
    "outside_query": (_label_outside, "outside the query were given a class"),
}


def _assert_nothing_written(project: Project, before: dict) -> None:
    assert not project.round_dir(1).exists()
    assert sorted(p.name for p in project.rounds_dir.iterdir()) == ["r000"]
    assert (project.ledger_path.read_bytes() if project.ledger_path.exists() else None) == before["ledger"]


def _state(project: Project) -> dict:
    return {"ledger": project.ledger_path.read_bytes() if project.ledger_path.exists() else None}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_file_is_refused_and_nothing_written(prepared, tmp_path, case):
    change, message = CORRUPTIONS[case]
    project = _project(prepared, tmp_path)
    export_queries(project, 0, tmp_path / "out")
    _fill_all(tmp_path / "out", project)
    _edit(tmp_path / "out" / "room_001.ply", change)
    before = _state(project)
    with pytest.raises(PcalError, match=message) as error:
        import_labels(project, 0, tmp_path / "out")
    assert "room_001.ply" in str(error.value) and "\n" not in str(error.value)
    _assert_nothing_written(project, before)


def test_relabel_is_accepted_with_allow_relabel(prepared, tmp_path):
    project = _project(prepared, tmp_path)
    export_queries(project, 0, tmp_path / "out")
    _fill_all(tmp_path / "out", project)
    path = tmp_path / "out" / "room_001.ply"
    _edit(path, _change_known)
    _edit(path, _label_outside)
    v = PlyData.read(str(path), mmap=False)["vertex"].data  # rows are in scene order: row == pid
    known = load_labels(project, 0, "room_001", len(v))
    changed = int(np.flatnonzero((known >= 0) & (v["scalar_Classification"] != known))[0])
    outside = int(np.flatnonzero((known < 0) & (v["scalar_query"] == 0)
                                 & (v["scalar_Classification"] != NOT_ASKED))[0])
    commit = import_labels(project, 0, tmp_path / "out", allow_relabel=True)
    labels = load_labels(project, 1, "room_001", len(v))
    expected = _oracle(project)["room_001"]
    expected[changed] = v["scalar_Classification"][changed]
    assert np.array_equal(labels, expected)
    assert labels[outside] == -1  # not asked: ignored
    record = json.loads((project.round_dir(1) / "labelling.json").read_text())["import"]["files"]["room_001"]
    assert record["relabelled"] == 1 and record["ignored_outside_query"] == 1
    assert commit.points == sum(int(m.sum()) for m in query_points(project, 0, None).values())


def test_non_integer_label_is_refused(prepared, tmp_path):
    project = _project(prepared, tmp_path)
    export_queries(project, 0, tmp_path / "out")
    _fill_all(tmp_path / "out", project)
    path = tmp_path / "out" / "room_000.ply"
    v = PlyData.read(str(path), mmap=False)["vertex"].data
    out = np.empty(len(v), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("scalar_pid", "f4"),
                                  ("scalar_Classification", "f4")])
    for name in out.dtype.names:
        out[name] = v[name]
    out["scalar_Classification"][_first(v, v["scalar_query"] == 1)] = 2.5
    PlyData([PlyElement.describe(out, "vertex")]).write(str(path))
    before = _state(project)
    with pytest.raises(PcalError, match="non-integer"):
        import_labels(project, 0, tmp_path / "out")
    _assert_nothing_written(project, before)


def test_truncated_file_is_refused(prepared, tmp_path):
    project = _project(prepared, tmp_path)
    export_queries(project, 0, tmp_path / "out")
    _fill_all(tmp_path / "out", project)
    path = tmp_path / "out" / "room_000.ply"
    path.write_bytes(path.read_bytes()[:-500])
    before = _state(project)
    with pytest.raises(PcalError, match="room_000.ply: not a readable PLY"):
        import_labels(project, 0, tmp_path / "out")
    _assert_nothing_written(project, before)


@pytest.mark.parametrize("stranger", ["room_999.ply", "room_002.ply", "room_000.las"])
def test_file_of_an_unknown_scene_is_refused(prepared, tmp_path, stranger):
    project = _project(prepared, tmp_path)
    export_queries(project, 0, tmp_path / "out")
    _fill_all(tmp_path / "out", project)
    shutil.copy(tmp_path / "out" / "room_001.ply", tmp_path / "out" / stranger)
    before = _state(project)
    with pytest.raises(PcalError, match=stranger.replace(".", r"\.")):
        import_labels(project, 0, tmp_path / "out")
    _assert_nothing_written(project, before)


def test_missing_scene_file_and_unchanged_file_are_refused(prepared, tmp_path):
    project = _project(prepared, tmp_path)
    export_queries(project, 0, tmp_path / "out")
    before = _state(project)
    with pytest.raises(PcalError, match="unchanged since the export"):
        import_labels(project, 0, tmp_path / "out")
    (tmp_path / "out" / "room_001.ply").unlink()
    with pytest.raises(PcalError, match="no labelled file for scene.*room_001"):
        import_labels(project, 0, tmp_path / "out")
    _assert_nothing_written(project, before)


def test_example_script_exports_then_imports(prepared, tmp_path):
    project = _project(prepared, tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = tmp_path / "labelling"

    def run(step: str) -> subprocess.CompletedProcess:
        done = subprocess.run(["bash", str(EXAMPLE), step, str(project.root), str(out)], capture_output=True,
                              text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    assert "CloudCompare" in run("export").stdout
    _fill_all(out, project)
    assert "round 1" in run("import").stdout
    _assert_imported(project, _Commit(project), _oracle(project))


class _Commit:
    """The counts of an import done by the example script, read back from the round's record."""

    def __init__(self, project: Project):
        record = json.loads((project.round_dir(1) / "labelling.json").read_text())
        self.round, self.points = record["round"], record["points_added"]


def test_nan_pids_fall_back_to_coordinates(prepared, tmp_path):
    project = _project(prepared, tmp_path)
    export_queries(project, 0, tmp_path / "out")
    _fill_all(tmp_path / "out", project)

    def lose_some_pids(v):  # what merging a piece without the pid SF leaves (CloudCompare #2343)
        v["scalar_pid"][:10] = np.nan

    _edit(tmp_path / "out" / "room_000.ply", lose_some_pids)
    _assert_imported(project, import_labels(project, 0, tmp_path / "out"), _oracle(project))
    record = json.loads((project.round_dir(1) / "labelling.json").read_text())
    assert record["import"]["files"]["room_000"]["matched_by"] == "coordinates"


# -- a batch labelled in parts ---------------------------------------------------------------------
def _first_unit(path: Path) -> float:
    v = PlyData.read(str(path), mmap=False)["vertex"].data
    return float(np.unique(v["scalar_unit"][v["scalar_query"] == 1])[0])


def _record_seed(project: Project) -> None:
    """Round 0 recorded as pcal seed leaves it (labelling.json with checksums, ledger lines)."""
    labels = {name: load_labels(project, 0, name, 1500) for name in TRAIN}
    queries = (project.round_dir(0) / "queries.json").read_bytes()
    shutil.rmtree(project.round_dir(0))
    commit_labels(project, 0, labels, source="seed", unit="point")
    (project.round_dir(0) / "queries.json").write_bytes(queries)


def _partly_labelled(prepared: Path, tmp_path: Path) -> tuple[Project, Path, dict]:
    """Round 0's export with room_000 labelled and one of room_001's queried regions."""
    project = _project(prepared, tmp_path)
    _record_seed(project)
    out = tmp_path / "out"
    export_queries(project, 0, out)
    truth = _truth(project)
    _fill_ply(out / "room_000.ply", truth["room_000"])
    _fill_ply(out / "room_001.ply", truth["room_001"], units=[_first_unit(out / "room_001.ply")])
    return project, out, truth


def _record(project: Project, round_index: int) -> dict:
    return json.loads((project.round_dir(round_index) / "labelling.json").read_text())


def _no_problems(project: Project) -> None:
    assert [f.detail for f in check_project(project) if f.status == PROBLEM] == []
    assert check_invariants(project.root) == []


def test_a_partial_import_then_the_rest_make_two_rounds_that_add_up_to_the_oracle(prepared, tmp_path):
    project, out, truth = _partly_labelled(prepared, tmp_path)
    before = _state(project)
    with pytest.raises(PcalError, match=r"room_001.ply: .* have no class .*pass --partial"):
        import_labels(project, 0, out)  # without --partial, every query point needs its class
    _assert_nothing_written(project, before)

    masks = query_points(project, 0, None)
    asked = sum(int(m.sum()) for m in masks.values())
    first = import_labels(project, 0, out, partial=True)
    r1 = load_labels(project, 1, "room_001", 1500)
    left = int((masks["room_001"] & (r1 < 0)).sum())
    assert first.round == 1 and first.open_points == left > 0 and first.points == asked - left
    assert not (project.round_dir(1) / "queries.json").exists()
    assert np.array_equal(load_labels(project, 1, "room_000", 1500), _oracle(project)["room_000"])
    record = _record(project, 1)
    assert record["queries_round"] == 0 and record["source"] == "import"
    assert record["batch"] == {"import": 1, "points": asked, "labelled_points": asked - left, "open_points": left}
    assert record["import"]["files"]["room_001"]["open_points"] == left
    assert record["import"]["files"]["room_000"]["open_points"] == 0
    ledger = {e["scene"]: e for e in read_ledger(project) if e["round"] == 1}
    assert ledger["room_001"]["open_points"] == left and ledger["room_000"]["open_points"] == 0
    assert {e["batch_open_points"] for e in ledger.values()} == {left}
    assert {e["queries_round"] for e in ledger.values()} == {0}
    _no_problems(project)  # a round with no queries.json of its own is fine

    _fill_ply(out / "room_001.ply", truth["room_001"])  # the same folder, completed
    rest = import_labels(project, 0, out)
    assert rest.round == 2 and rest.points == left and rest.open_points == 0
    for name in TRAIN:
        assert np.array_equal(load_labels(project, 2, name, 1500), _oracle(project)[name])
    assert _record(project, 2)["batch"] == {"import": 2, "points": asked, "labelled_points": asked,
                                            "open_points": 0}
    entries = [e for e in read_ledger(project) if e["round"] >= 1]
    assert sum(e["points"] for e in entries) == asked
    units = {name: len(q.units) for name, q in query_scenes(project, 0).items()}
    for name in TRAIN:  # each queried unit counted once over the two imports, as one import counts them
        assert sum(e["units"] for e in entries if e["scene"] == name) == units[name]
    _no_problems(project)

    again = import_labels(project, 0, out)  # a rerun adds nothing and says why
    assert again.skipped and project.rounds() == [0, 1, 2]
    assert again.note == (f"nothing imported: every labelled point of {out} is already known in round 2 "
                          "(imported as round 2 from the same files)")
    assert import_labels(project, 1, out).skipped  # round 1 stands for round 0's queries


def test_labels_of_an_earlier_import_are_never_lost_nor_changed_silently(prepared, tmp_path):
    project, out, truth = _partly_labelled(prepared, tmp_path)
    pristine = tmp_path / "pristine"
    export_queries(project, 0, pristine)  # a second copy of the export, for a second person
    import_labels(project, 0, out, partial=True)
    r1 = load_labels(project, 1, "room_001", 1500)

    # the second person labelled the rest of room_001 and left room_000 alone: the points the
    # first import took are still 255 in their copy, and are kept
    _fill_ply(pristine / "room_001.ply", truth["room_001"])
    path = pristine / "room_001.ply"
    v = PlyData.read(str(path), mmap=False)["vertex"].data
    taken = np.flatnonzero((v["scalar_query"] == 1) & (r1[v["scalar_pid"].astype(np.int64)] >= 0))
    changed = int(taken[0])
    _edit(path, lambda v: v["scalar_Classification"].__setitem__(taken[1:4], QUERY))  # left at 255: kept
    _edit(path, lambda v: v["scalar_Classification"].__setitem__(changed,
                                                                 (v["scalar_Classification"][changed] + 1) % 13))
    before = _state(project)
    with pytest.raises(PcalError, match="given by an earlier import of this batch changed class"):
        import_labels(project, 0, pristine)
    assert project.rounds() == [0, 1] and _state(project) == before

    commit = import_labels(project, 0, pristine, allow_relabel=True)  # a correction, said so
    labels = load_labels(project, 2, "room_001", 1500)
    assert commit.round == 2 and commit.open_points == 0
    assert np.array_equal(labels[taken[1:4]], r1[taken[1:4]])
    assert labels[changed] == (r1[changed] + 1) % 13
    assert _record(project, 2)["import"]["files"]["room_001"]["relabelled"] == 1
    assert np.array_equal(load_labels(project, 2, "room_000", 1500), load_labels(project, 1, "room_000", 1500))
    _no_problems(project)


def test_a_reimport_that_adds_nothing_says_why(prepared, tmp_path):
    project, out, _ = _partly_labelled(prepared, tmp_path)
    commit = import_labels(project, 0, out, partial=True)
    same = import_labels(project, 0, out, partial=True)
    assert same.skipped and same.open_points == commit.open_points
    assert same.note.endswith(f"(imported as round 1 from the same files); {commit.open_points:,} point(s) of "
                              "the batch are still to label")

    def nudge(v):  # saved again by a tool: other bytes, the same labels
        v["x"][0] += np.float32(1e-4)

    _edit(out / "room_000.ply", nudge)
    touched = import_labels(project, 0, out, partial=True)
    assert touched.skipped and project.rounds() == [0, 1]
    assert touched.note.startswith(f"nothing imported: every labelled point of {out} is already known in round 1 "
                                   "(imported as round 1 from the same batch)")


def test_nothing_labelled_and_a_closed_batch_are_refused(prepared, tmp_path):
    project = _project(prepared, tmp_path)
    export_queries(project, 0, tmp_path / "out")
    before = _state(project)
    with pytest.raises(PcalError, match="nothing imported: no query point has a class yet .*unchanged since the"):
        import_labels(project, 0, tmp_path / "out", partial=True)
    _assert_nothing_written(project, before)

    project, out, truth = _partly_labelled(prepared, tmp_path / "again")
    import_labels(project, 0, out, partial=True)
    write_json(project.round_dir(1) / "queries.json", {"round": 1, "unit": "region", "queries": []})  # pcal select
    _fill_ply(out / "room_001.ply", truth["room_001"])
    with pytest.raises(PcalError, match=r"exported for round 0's queries but the project is at round 1 \(round 1, "
                                        r"its last import, has queries of its own since\)"):
        import_labels(project, 0, out)
    assert project.rounds() == [0, 1]


def test_the_export_after_a_partial_import_holds_what_is_still_open(prepared, tmp_path, pcal):
    project, out, truth = _partly_labelled(prepared, tmp_path)
    result = pcal("label", "-p", project.root, "import", out, "--partial")
    assert result.code == 0, result.err
    assert "round 1: " in result.out and "point(s) of the batch are still to label" in result.out
    left = _record(project, 1)["batch"]["open_points"]

    result = pcal("label", "-p", project.root, "export", "--out", tmp_path / "rest")  # the latest round: 1
    assert result.code == 0, result.err
    manifest = json.loads((tmp_path / "rest" / "manifest.json").read_text())
    assert manifest["round"] == 0 and manifest["labels_round"] == 1
    assert set(manifest["scenes"]) == {"room_001"} and manifest["scenes"]["room_001"]["query_points"] == left
    _fill_ply(tmp_path / "rest" / "room_001.ply", truth["room_001"])
    result = pcal("label", "-p", project.root, "import", tmp_path / "rest")
    assert result.code == 0, result.err
    assert f"round 2: {left:,} points imported in 1 scene(s)" in result.out
    for name in TRAIN:
        assert np.array_equal(load_labels(project, 2, name, 1500), _oracle(project)[name])

    result = pcal("label", "-p", project.root, "import", tmp_path / "rest")
    assert result.code == 0 and result.out == ""
    assert result.err.strip() == (f"nothing imported: every labelled point of {tmp_path / 'rest'} is already "
                                  "known in round 2 (imported as round 2 from the same files)")
    result = pcal("label", "-p", project.root, "import", out)  # the first folder, partly labelled: closed
    assert result.code == 0 and "already known in round 1 (imported as round 1 from the same files; the " \
        "project is now at round 2)" in result.err
    _no_problems(project)


def test_a_partial_import_killed_before_its_ledger_update_is_finished_by_the_rerun(prepared, tmp_path,
                                                                                  monkeypatch):
    project, out, _ = _partly_labelled(prepared, tmp_path)
    reference = _partly_labelled(prepared, tmp_path / "reference")[0]
    import_labels(reference, 0, tmp_path / "reference" / "out", partial=True)
    wanted = [e for e in read_ledger(reference) if e["round"] == 1]

    import pcal_cli.rounds

    def killed(project):
        raise KeyboardInterrupt  # the round folder is in place, the ledger not updated yet

    monkeypatch.setattr(pcal_cli.rounds, "sync_ledger", killed)
    with pytest.raises(KeyboardInterrupt):
        import_labels(project, 0, out, partial=True)
    monkeypatch.undo()
    assert project.rounds() == [0, 1] and not [e for e in read_ledger(project) if e["round"] == 1]
    rerun = import_labels(project, 0, out, partial=True)
    assert rerun.skipped and "imported as round 1 from the same files" in rerun.note
    assert [e for e in read_ledger(project) if e["round"] == 1] == wanted
    _no_problems(project)
