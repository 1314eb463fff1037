"""HPAL inside the round engine: teacher-student training, candidates kept per scene, FDS selection."""


import numpy as np
import pytest
import torch

from pcal_cli.errors import PcalError
from pcal_cli.project import Project
from pcal_cli.rounds import read_json
from pcal_cli.steps.round import run_rounds
from pcal_cli.steps.score import ScoreSettings, score_round
from pcal_cli.steps.seed import seed_round
from pcal_cli.steps.select import select_round
from pcal_cli.training.checkpoint import load_checkpoint
from pcal_cli.training.supervised import MODEL_FILE, PARTIAL_FILE, TrainOptions, train

TS = TrainOptions(cr=0.125, steps=4, batch_size=2, device="cpu", semi="teacher-student", checkpoint_every=2)

from conftest import project_copy, synthetic_project


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("hpal") / "p"
    synthetic_project(root, 5, 1500)
    seed_round(Project.open(root), "random", "point", "2%", seed=0)
    return root


@pytest.fixture
def project(base, tmp_path):
    return project_copy(base, tmp_path)


def _weights(path):
    state = load_checkpoint(path)
    return state["model"], state.get("teacher")


def test_teacher_student_checkpoint_holds_student_as_the_model_and_the_teacher(project):
    train(project, 0, TS)
    student, teacher = _weights(project.round_dir(0) / MODEL_FILE)
    assert teacher is not None and teacher.keys() == student.keys()
    name = next(k for k in teacher if k.endswith("weight") and teacher[k].is_floating_point())
    assert not torch.equal(teacher[name], student[name])  # the EMA lags the student
    with pytest.raises(PcalError, match="semi"):
        train(project, 0, TrainOptions(semi="co-training"), force=True)
    # the option of evaluating the teacher saves it as the model, the same student beside it
    options = TrainOptions(**{**TS.__dict__, "ts_evaluate": "teacher"})
    train(project, 0, options, force=True)
    state = load_checkpoint(project.round_dir(0) / MODEL_FILE)
    assert torch.equal(state["model"][name], teacher[name]) and torch.equal(state["student"][name], student[name])


def test_teacher_student_resume_equals_an_uninterrupted_run(project, tmp_path):
    train(project, 0, TS)
    whole = _weights(project.round_dir(0) / MODEL_FILE)
    (project.round_dir(0) / MODEL_FILE).unlink()
    stopped = TrainOptions(**{**TS.__dict__, "steps": 4})

    calls = []

    def stop_after_two(done, total, loss):
        calls.append(done)
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(project, 0, stopped, on_step=stop_after_two)
    assert (project.round_dir(0) / PARTIAL_FILE).is_file() and not (project.round_dir(0) / MODEL_FILE).exists()
    result = train(project, 0, stopped, resume=True)
    assert result.resumed_from == 2
    resumed = _weights(project.round_dir(0) / MODEL_FILE)
    for a, b in zip(whole, resumed):
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_hpal_round_keeps_candidates_and_suppresses_near_similar_points(project):
    tiny = TrainOptions(cr=0.125, steps=2, batch_size=2, device="cpu")
    run_rounds(project, "hpal", rounds=1, budget="1%", options=tiny, label=False)
    config = read_json(project.round_dir(0) / "scores" / "config.json", "scores")
    assert config["keep"] == 4096 and config["unit"] == "point" and config["features"]
    round_config = read_json(project.round_dir(0) / "round.json", "round")
    assert round_config["train"]["semi"] == "teacher-student" and round_config["train"]["warm_start"]
    queries = read_json(project.round_dir(0) / "queries.json", "queries")
    assert queries["selector"] == "fds" and queries["spent_points"] == queries["budget_points"]
    # no two chosen points of a scene are within 0.2 m with cosine > 0.8 of their features
    for name in {q["scene"] for q in queries["queries"]}:
        with np.load(project.round_dir(0) / "scores" / f"{name}.npz") as data:
            units, xyz, feats = data["units"], data["xyz"], data["features"]
            assert len(units) <= 4096 and int(data["pool"]) >= len(units)
        rows = np.searchsorted(units, [q["unit"] for q in queries["queries"] if q["scene"] == name])
        f = feats[rows] / np.linalg.norm(feats[rows], axis=1, keepdims=True)
        near = np.linalg.norm(xyz[rows][:, None] - xyz[rows][None], axis=2) < 0.2
        similar = f @ f.T > 0.8
        assert not (near & similar & ~np.eye(len(rows), dtype=bool)).any()
    again = select_round(project, 0, "1%", selector="fds", seed=0, method="hpal",
                         train_options=round_config["train"], force=True)
    assert again["queries"] == queries["queries"]


def test_keep_bounds_the_candidates_and_select_says_so(project):
    train(project, 0, TrainOptions(cr=0.125, steps=1, device="cpu"))
    score_round(project, 0, ScoreSettings(scorer="margin", unit="point", keep=5))
    with np.load(project.round_dir(0) / "scores" / f"{project.scenes('train')[0]}.npz") as data:
        assert len(data["units"]) == 5 and int(data["pool"]) > 1000
        assert np.all(np.diff(data["units"]) > 0)
    candidates = 5 * len(project.scenes("train"))
    assert len(select_round(project, 0, str(candidates))["queries"]) == candidates
    with pytest.raises(PcalError, match="larger --keep"):
        select_round(project, 0, str(candidates + 1), force=True)
    score_round(project, 0, ScoreSettings(scorer="margin", unit="region", features=True), force=True)
    with pytest.raises(PcalError, match="--unit point"):
        select_round(project, 0, "20", selector="fds", force=True)
