"""WSegPC in pcal: tags as labels, the three stages, pseudo-labels apart from the budget, --init."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

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
    record = json.loads((folder / "pseudo" / "labelling.json").read_text())
    assert record["calibration"] == "prior" and len(record["prior"]) == project.config.num_classes
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


def _image_features(project, folder, *, rows_off: str | None = None, dtype=np.float16):
    """Per-point features of every training scene, correlated with the ground truth (a stand-in for
    a 2D network's), every 4th point unseen (NaN); ``rows_off``: that scene gets one row too many."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in project.scenes("train"):
        truth = read_ply(project.scene_path("train", name)).label
        feats = np.eye(project.config.num_classes, 6, dtype=np.float32)[np.maximum(truth, 0)]
        feats += 0.1 * rng.standard_normal(feats.shape).astype(np.float32)
        feats[::4] = np.nan
        if name == rows_off:
            feats = np.concatenate([feats, feats[:1]])
        np.save(folder / f"{name}.npy", feats.astype(dtype))
    return folder


def test_wsegpc_with_image_features_records_them_and_resumes_exactly(project, tmp_path):
    from pcal_cli.training.supervised import train

    folder = _image_features(project, tmp_path / "feats")
    options = replace(TINY, image_features=str(folder), steps=3)
    run_rounds(project, "wsegpc", options=options)
    base = wsegpc_dir(project, 0)
    for stage in ("stage1", "stage2"):
        state = load_checkpoint(base / stage / "model.pt")
        assert state["config"]["image_features"] == str(folder) and state["config"]["tag_drop"] == 0.5
        assert state["crossmodal"]["head2.net.0.weight"].shape[1] == 6
    stage3 = load_checkpoint(base / "stage3" / "model.pt")
    assert stage3["config"]["image_features"] is None and "crossmodal" not in stage3

    tags = replace(options, recipe="scene-tags", steps=4, checkpoint_every=2)
    reference = load_checkpoint(train(project, 0, tags, folder=tmp_path / "ref").path)

    def interrupt(done, total, loss):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(project, 0, tags, folder=tmp_path / "cut", on_step=interrupt)
    assert any(k.startswith("optimizer.") for k in load_checkpoint(tmp_path / "cut" / "model.partial.pt")["crossmodal"])
    resumed = load_checkpoint(train(project, 0, tags, folder=tmp_path / "cut", resume=True).path)
    for key in ("model", "crossmodal"):
        assert reference[key].keys() == resumed[key].keys()
        assert all(torch.equal(reference[key][k], resumed[key][k]) for k in reference[key])
    plain = load_checkpoint(train(project, 0, replace(tags, image_features=None), folder=tmp_path / "plain").path)
    assert "crossmodal" not in plain and not torch.equal(plain["model"][next(iter(plain["model"]))],
                                                         reference["model"][next(iter(plain["model"]))])


def test_tag_drop_zero_leaves_the_scenes_alone_and_changes_training(project, tmp_path):
    from pcal_cli.training.supervised import train

    oracle_tags(project)
    base = replace(TINY, recipe="scene-tags", steps=3)
    weights = {p: load_checkpoint(train(project, 0, replace(base, tag_drop=p), folder=tmp_path / str(p)).path)["model"]
               for p in (0.0, 1.0)}
    again = load_checkpoint(train(project, 0, replace(base, tag_drop=1.0), folder=tmp_path / "again").path)["model"]
    assert all(torch.equal(weights[1.0][k], again[k]) for k in again)  # same seed, same drops
    assert not all(torch.equal(weights[0.0][k], weights[1.0][k]) for k in again)


@pytest.mark.parametrize("case", ["missing", "rows", "dtype", "nofolder", "supervised"])
def test_bad_image_features_exit_2_with_one_line(project, pcal, tmp_path, case):
    oracle_tags(project)
    folder = tmp_path / "feats"
    names = project.scenes("train")
    if case == "rows":
        _image_features(project, folder, rows_off=names[-1])
    elif case == "dtype":
        _image_features(project, folder)
        np.save(folder / f"{names[0]}.npy", np.full((4, 2), "x"))
    elif case != "nofolder":
        _image_features(project, folder)
        if case == "missing":
            (folder / f"{names[0]}.npy").unlink()
    recipe = "supervised" if case == "supervised" else "scene-tags"
    before = tree_bytes(project.root)
    result = pcal("train", "-p", project.root, "--recipe", recipe, "--steps", "2", "--cr", "0.125",
                  "--device", "cpu", "--image-features", folder)
    needle = {"missing": f"no {names[0]}.npy", "rows": "feature rows but the scene has", "dtype": "real numbers",
              "nofolder": "no such folder", "supervised": "scene-tag recipes only"}[case]
    assert result.code == 2, result.err
    assert needle in result.err and len(result.err.strip().splitlines()) == 1
    assert tree_bytes(project.root) == before


def test_round_checks_image_features_before_writing_anything(base, pcal, tmp_path):
    project = project_copy(base, tmp_path)
    folder = tmp_path / "feats"
    _image_features(project, folder)
    (folder / f"{project.scenes('train')[0]}.npy").unlink()
    before = tree_bytes(project.root)
    result = pcal("round", "-p", project.root, "--method", "wsegpc", "--steps", "2", "--cr", "0.125",
                  "--device", "cpu", "--image-features", folder)
    assert result.code == 2 and "for training scene" in result.err and len(result.err.strip().splitlines()) == 1
    assert tree_bytes(project.root) == before and not project.rounds()
    result = pcal("round", "-p", project.root, "--method", "margin", "--steps", "2", "--image-features", folder)
    assert result.code == 2 and "scene-tag recipes only" in result.err


def test_stage_one_ramps_its_tag_loss_from_zero_and_stage_two_its_consistency(project):
    from pcal_cli.models import build_model
    from pcal_cli.training.recipes import SceneTags, tag_ramp_steps

    assert tag_ramp_steps(None, 1000, consistency=False) == 40  # the release's 2400 of 60,000 iterations
    assert tag_ramp_steps(None, 1000, consistency=True) == 80  # and 2400 of 30,000
    assert tag_ramp_steps(0.5, 1000, True) == 500 and tag_ramp_steps(30, 1000, False) == 30
    oracle_tags(project)
    tags = load_tags(project, 0)
    plys = {name: read_ply(project.scene_path("train", name)) for name in sorted(tags)}
    scenes = [(ply, np.full(len(ply), -1, np.int16), tags[name]) for name, ply in plys.items()]
    options = replace(TINY, steps=100, tag_warmup=None, tag_drop=0.0)
    losses = {}
    for consistency in (False, True):
        model = build_model("minkunet", 6, project.config.num_classes, cr=0.125, seed=0)
        recipe = SceneTags(model, options, project.config.num_classes, consistency=consistency)
        recipe.total_steps = 100
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
        losses[consistency] = [recipe.step(optimizer, scenes, project.config, step, torch.device("cpu"))
                               for step in (0, 2)]
    assert losses[False][0] == 0.0 < losses[False][1]  # stage 1: the tag loss starts at weight 0
    assert losses[True][0] > 0.0  # stage 2: the tag loss at weight 1 from the first step
