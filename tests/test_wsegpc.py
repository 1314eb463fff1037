"""WSegPC in pcal: tags as labels, the three stages, pseudo-labels apart from the budget, --init."""


import numpy as np
import pytest

from pcal_cli.check import PROBLEM, check_project
from pcal_cli.data.ply import read_ply
from pcal_cli.errors import PcalError
from pcal_cli.evaluation.report import collect_run
from pcal_cli.rounds import read_ledger
from pcal_cli.steps.round import run_rounds
from pcal_cli.steps.tags import load_tags, oracle_tags
from pcal_cli.steps.wsegpc import pseudo_label_quality, wsegpc_dir
from pcal_cli.training.checkpoint import load_checkpoint
from pcal_cli.training.supervised import TrainOptions

from conftest import project_copy, synthetic_project, tree_bytes

TINY = TrainOptions(cr=0.125, steps=2, batch_size=2, device="cpu", tag_warmup=1)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("wsegpc") / "p"
    synthetic_project(root, 4, 1200)
    return root


@pytest.fixture
def project(base, tmp_path):
    return project_copy(base, tmp_path)


def test_oracle_tags_are_class_presence_and_cost_no_points(project, pcal):
    result = pcal("label", "-p", project.root, "--oracle", "--unit", "tags")
    assert result.code == 0, result.err
    tags = load_tags(project, 0)
    for name in project.scenes("train"):
        truth = read_ply(project.scene_path("train", name)).label
        np.testing.assert_array_equal(np.flatnonzero(tags[name]), np.unique(truth[truth >= 0]))
    ledger = read_ledger(project)
    assert {e["unit"] for e in ledger} == {"tags"} and sum(e["points"] for e in ledger) == 0
    assert sum(e["units"] for e in ledger) == len(project.scenes("train"))


def test_import_tags_from_csv_and_refusals(project, pcal, tmp_path):
    name = project.scenes("train")[0]
    good = tmp_path / "tags.csv"
    good.write_text(f"scene,classes\n{name},wall;floor\n")
    result = pcal("label", "-p", project.root, "import-tags", good)
    assert result.code == 0, result.err
    assert np.flatnonzero(load_tags(project, 0)[name]).tolist() == sorted(
        project.config.classes.index(c) for c in ("wall", "floor"))
    bad = tmp_path / "bad.csv"
    bad.write_text(f"scene,classes\n{name},wal\n")
    before = tree_bytes(project.root)
    result = pcal("label", "-p", project.root, "import-tags", bad)
    assert result.code == 2 and "wall" in result.err and len(result.err.strip().splitlines()) == 1
    assert tree_bytes(project.root) == before


def test_wsegpc_pipeline_pseudo_labels_respect_tags_and_cost_nothing(project, pcal):
    run_rounds(project, "wsegpc", options=TINY)
    folder = wsegpc_dir(project, 0)
    for stage in ("stage1", "stage2", "stage3"):
        assert (folder / stage / "model.pt").is_file()
    assert {"teacher", "pseudo_counts"} <= set(load_checkpoint(folder / "stage2" / "model.pt"))
    tags = load_tags(project, 0)
    for path in (folder / "pseudo" / "labels").glob("*.npy"):
        labels = np.load(path)
        assert (labels >= 0).all()  # the final pseudo-labels cover every point
        assert set(np.unique(labels)) <= set(np.flatnonzero(tags[path.stem]))  # never an absent class
    assert {e["source"] for e in read_ledger(project)} == {"oracle", "pseudo"}
    assert collect_run(project.root).ledger_points == 0  # pseudo-labels never count as budget
    assert not [f for f in check_project(project) if f.status == PROBLEM]
    quality = pseudo_label_quality(project, 0)
    assert quality["points"] == project.point_count("train") and 0 <= quality["miou"] <= 1
    result = pcal("evaluate", "-p", project.root, "--pseudo")
    assert result.code == 0 and "pseudo-labels of round 0" in result.out
    again = tree_bytes(folder)
    run_rounds(project, "wsegpc", options=TINY)  # every stage exists: nothing is redone
    assert tree_bytes(folder) == again


def test_point_active_learning_starts_from_the_wsegpc_network(project):
    run_rounds(project, "wsegpc", options=TINY)
    run_rounds(project, "margin", rounds=1, budget="1%", unit="point",
               options=TrainOptions(cr=0.125, steps=1, device="cpu", init="wsegpc"), final=False)
    assert project.rounds() == [0, 1]
    assert (project.round_dir(0) / "model.pt").read_bytes() == \
        (wsegpc_dir(project, 0) / "stage3" / "model.pt").read_bytes()
    assert sum(e["points"] for e in read_ledger(project) if e["source"] == "oracle") > 0
    carried, first = load_tags(project, 1), load_tags(project, 0)  # tags are carried into later rounds
    assert carried.keys() == first.keys() and all(np.array_equal(carried[k], v) for k, v in first.items())


def test_oracle_tags_twice_is_refused(project):
    oracle_tags(project)
    with pytest.raises(PcalError, match="nothing new"):
        oracle_tags(project)
