"""JoPro inside the round engine: flow + prototypes per round, the jopro selector, contrastive training."""


import numpy as np
import pytest
import torch

from pcal_cli.errors import PcalError
from pcal_cli.project import Project
from pcal_cli.rounds import read_json
from pcal_cli.steps.jopro_round import class_sums, combine_prototypes, load_flow
from pcal_cli.steps.round import run_rounds
from pcal_cli.steps.score import ScoreSettings, score_round
from pcal_cli.steps.seed import seed_round
from pcal_cli.steps.select import select_round
from pcal_cli.training.checkpoint import load_checkpoint
from pcal_cli.training.supervised import MODEL_FILE, TrainOptions, train

REG = TrainOptions(cr=0.125, steps=4, batch_size=2, device="cpu", reg="hybrid-contrastive", checkpoint_every=2)

from conftest import project_copy, synthetic_project


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("jopro") / "p"
    synthetic_project(root, 5, 1500)
    seed_round(Project.open(root), "random", "point", "3%", seed=0)
    return root


@pytest.fixture
def project(base, tmp_path):
    return project_copy(base, tmp_path)


def test_prototypes_use_one_side_when_the_other_is_empty():
    feats = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    labelled = class_sums(feats[:2], np.array([0, 0]), 3)  # class 0 labelled only
    uncertain = class_sums(feats[1:], np.array([0, 1, 1]), 3)  # class 0 and 1 predicted
    protos, present = combine_prototypes(labelled, uncertain)
    np.testing.assert_allclose(protos[0], 0.5 * np.array([2.0, 0.0]) + 0.5 * np.array([3.0, 0.0]))
    np.testing.assert_allclose(protos[1], [0.0, 3.0])  # no labelled class 1: the uncertain mean alone
    assert present.tolist() == [True, True, False]  # class 2 is absent, not a zero prototype


def test_jopro_round_writes_flow_prototypes_and_candidates(project):
    tiny = TrainOptions(cr=0.125, steps=2, batch_size=2, device="cpu")
    run_rounds(project, "jopro", rounds=1, budget="1%", options=tiny, label=False,
               scorer_options={"flow_steps": 5})
    folder = project.round_dir(0) / "scores"
    flow = load_flow(folder / "flow.pt")
    assert flow.num_classes == project.config.num_classes
    with np.load(folder / "prototypes.npz") as data:
        assert data["present"].any() and data["protos"].shape[0] == project.config.num_classes
    queries = read_json(project.round_dir(0) / "queries.json", "queries")
    for name in project.scenes("train"):
        with np.load(folder / f"{name}.npz") as data:  # the candidates, and the points that may fill the budget
            assert int(data["candidates"]) == int(np.ceil(0.02 * int(data["pool"])))
            assert len(data["units"]) == min(int(data["pool"]), max(int(data["candidates"]), queries["budget_points"]))
    assert queries["selector"] == "jopro" and queries["spent_points"] == queries["budget_points"]
    round_config = read_json(project.round_dir(0) / "round.json", "round")
    assert round_config["train"]["reg"] == "hybrid-contrastive"
    again = select_round(project, 0, "1%", selector="jopro", method="jopro", train_options=round_config["train"],
                         force=True)
    assert again["queries"] == queries["queries"]
    (folder / "flow.pt").write_bytes(b"not a flow")
    with pytest.raises(PcalError, match="feature flow"):
        load_flow(folder / "flow.pt")


def test_jopro_round_fills_a_budget_larger_than_its_candidates(project):
    tiny = TrainOptions(cr=0.125, steps=2, batch_size=2, device="cpu")
    run_rounds(project, "jopro", rounds=1, budget="5%", options=tiny, label=False, scorer_options={"flow_steps": 5})
    queries = read_json(project.round_dir(0) / "queries.json", "queries")
    candidates = 0
    for name in project.scenes("train"):
        with np.load(project.round_dir(0) / "scores" / f"{name}.npz") as data:
            candidates += int(data["candidates"])
    assert queries["budget_points"] > candidates  # 5 % of the points against 2 % of each scene's pool
    assert queries["spent_points"] == queries["budget_points"]


def test_jopro_selector_needs_fms_scores(project):
    train(project, 0, TrainOptions(cr=0.125, steps=1, device="cpu"))
    score_round(project, 0, ScoreSettings(scorer="margin", unit="point", features=True, keep=50))
    with pytest.raises(PcalError, match="scorer fms"):
        select_round(project, 0, "10", selector="jopro")


def test_hybrid_contrastive_training_checkpoints_teacher_and_subprototypes(project):
    train(project, 0, REG)
    state = load_checkpoint(project.round_dir(0) / MODEL_FILE)
    assert {"teacher", "subprototypes"} <= set(state)
    assert state["subprototypes"]["centres"].shape[0] == project.config.num_classes
    whole = {k: v.clone() for k, v in state["model"].items()}
    (project.round_dir(0) / MODEL_FILE).unlink()

    def stop(done, total, loss):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(project, 0, REG, on_step=stop)
    train(project, 0, REG, resume=True)
    resumed = load_checkpoint(project.round_dir(0) / MODEL_FILE)["model"]
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
    with pytest.raises(PcalError, match="cannot be combined"):
        train(project, 0, TrainOptions(semi="teacher-student", reg="hybrid-contrastive"), force=True)


def test_contrastive_teacher_ramps_to_099():
    from pcal_cli.training.recipes import CONTRASTIVE_KEEP, contrastive_keep

    assert contrastive_keep(0) == 0.0  # the first step copies the student
    assert contrastive_keep(9) == pytest.approx(0.9)
    assert contrastive_keep(5000) == CONTRASTIVE_KEEP == 0.99
    assert all(contrastive_keep(s) <= contrastive_keep(s + 1) for s in range(500))


def test_contrastive_teacher_copies_the_student_at_the_first_step(project):
    from dataclasses import replace

    train(project, 0, replace(REG, steps=1))
    state = load_checkpoint(project.round_dir(0) / MODEL_FILE)
    for key, value in state["model"].items():
        assert torch.equal(state["teacher"][key], value), key


def test_regulariser_weights_change_training(project):
    # with every point confident (reg_conf 0) the regulariser is active from the first step, so
    # its weights must change the trained network
    from dataclasses import replace

    weights = {}
    for w in (0.0, 1.0):
        train(project, 0, replace(REG, steps=3, reg_conf=0.0, reg_weights=(w, w, w)), force=True)
        weights[w] = load_checkpoint(project.round_dir(0) / MODEL_FILE)["model"]
    assert any(not torch.equal(weights[0.0][k], weights[1.0][k]) for k in weights[0.0])
