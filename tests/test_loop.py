"""The active learning loop on tiny synthetic projects: seed, score, select, label, round."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pcal_cli.data.ply import read_ply, write_ply
from pcal_cli.errors import PcalError
from pcal_cli.project import Project
from pcal_cli.rounds import labelled_counts, load_labels, read_ledger
from pcal_cli.steps.label import oracle_round
from pcal_cli.steps.round import run_rounds
from pcal_cli.steps.score import ScoreSettings, score_round
from pcal_cli.steps.seed import seed_round
from pcal_cli.steps.select import select_round
from pcal_cli.training.supervised import TrainOptions, profile_options, train

from conftest import project_copy, synthetic_project, tree_bytes

TINY = TrainOptions(cr=0.125, steps=3, batch_size=2, device="cpu")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop") / "p"
    synthetic_project(root, 5, 1500)
    return root


@pytest.fixture
def project(base, tmp_path):
    return project_copy(base, tmp_path)


def _total(project):
    return sum(labelled_counts(project, project.rounds()[-1]).values())


@pytest.mark.parametrize("unit, budget, expected", [("point", "2%", 90), ("point", "100", 100),
                                                    ("point", "7/scene", 21)])
def test_seed_budgets_are_exact_for_points(project, unit, budget, expected):
    commit = seed_round(project, "random", unit, budget, seed=0)
    assert commit.round == 0 and commit.points == expected == _total(project)
    assert sum(e["points"] for e in read_ledger(project)) == expected
    assert {e["source"] for e in read_ledger(project)} == {"seed"}


@pytest.mark.parametrize("budget", ["2%", "100", "1", "4499", "4500", "7/scene", "2000/scene"])
@pytest.mark.parametrize("chunk", [1 << 22, 64])
def test_streamed_random_points_match_the_table(base, budget, chunk, monkeypatch):
    # the two-pass random point seed picks exactly what ranking one random score per point picks
    import pcal_cli.steps.seed as seeding

    project = Project.open(base)
    monkeypatch.setattr(seeding, "CHUNK", chunk)
    monkeypatch.setattr(seeding, "SCORE_BINS", 16)  # many ties of bin with few points
    for seed in (0, 5):
        streamed = seeding.random_seed_points(project, budget, seed)
        table = seeding.random_seed_table(project, "point", budget, seed)
        assert streamed.keys() == table.keys()
        for name in table:
            np.testing.assert_array_equal(streamed[name], table[name])


@pytest.mark.parametrize("unit", ["scene", "region", "cell"])
def test_seed_never_exceeds_the_budget(project, unit):
    commit = seed_round(project, "random", unit, "40%" if unit == "scene" else "5%", seed=3)
    limit = (0.40 if unit == "scene" else 0.05) * 4500
    assert 0 < commit.points <= limit
    truth = read_ply(project.scene_path("train", next(iter(commit.scenes)))).label
    labels = load_labels(project, 0, next(iter(commit.scenes)), len(truth))
    known = labels >= 0
    np.testing.assert_array_equal(labels[known], truth[known])


def test_seed_is_deterministic_and_skips_existing(project, tmp_path):
    seed_round(project, "random", "region", "5%", seed=4)
    first = tree_bytes(project.round_dir(0))
    assert seed_round(project, "random", "region", "5%", seed=4).skipped
    seed_round(project, "random", "region", "5%", seed=4, force=True)
    assert tree_bytes(project.round_dir(0)) == first
    assert len(read_ledger(project)) == len(json.loads((project.round_dir(0) / "labelling.json").read_text())["scenes"])


def test_oracle_balanced_seed_takes_a_share_of_every_class_in_every_scene(project):
    seed_round(project, "oracle-balanced", None, "1%", seed=2)
    assert json.loads((project.round_dir(0) / "labelling.json").read_text())["unit"] == "point"
    for name in project.scenes("train"):
        truth = read_ply(project.scene_path("train", name)).label
        labels = load_labels(project, 0, name, len(truth))
        known = labels >= 0
        np.testing.assert_array_equal(labels[known], truth[known])
        for label in np.unique(truth[truth >= 0]):
            assert (labels == label).sum() == max(1, round(0.01 * (truth == label).sum()))
    first = tree_bytes(project.round_dir(0))
    seed_round(project, "oracle-balanced", None, "1%", seed=2, force=True)
    assert tree_bytes(project.round_dir(0)) == first


@pytest.mark.parametrize("unit, budget, message", [("region", "1%", "--unit point"),
                                                   ("point", "100", "percentage")])
def test_oracle_balanced_seed_rejects_other_units_and_budgets(project, unit, budget, message):
    with pytest.raises(PcalError, match=message):
        seed_round(project, "oracle-balanced", unit, budget)
    assert project.rounds() == []


@pytest.mark.parametrize("budget, message", [("200%", "100"), ("abc", "budget"), ("0", "budget"),
                                             ("999999", "exceeds")])
def test_bad_seed_budgets(project, budget, message):
    with pytest.raises(PcalError, match=message):
        seed_round(project, "random", "point", budget)
    assert project.rounds() == []


def _one_round(project, scorer="margin", unit="region", budget="3%", selector="topk"):
    train(project, 0, TINY)
    score_round(project, 0, ScoreSettings(scorer=scorer, unit=unit), device="cpu")
    return select_round(project, 0, budget, selector=selector)


@pytest.mark.parametrize("scorer, unit, selector", [
    ("margin", "region", "topk"), ("entropy", "point", "topk"), ("confidence", "cell", "topk"),
    ("random", "scene", "topk"), ("mc_dropout", "region", "topk"), ("segment_entropy", "cell", "topk"),
    ("coreset", "region", "kcenter"),
])
def test_every_scorer_selects_within_budget_and_oracle_grows_labels(project, scorer, unit, selector):
    seed_round(project, "random", "region", "5%", seed=0)
    sizes = {n: len(read_ply(project.scene_path("train", n))) for n in project.scenes("train")}
    before = {n: load_labels(project, 0, n, sizes[n]) for n in labelled_counts(project, 0)}
    budget = "30%" if unit == "scene" else "3%"
    queries = _one_round(project, scorer, unit, budget, selector)
    assert 0 < queries["spent_points"] <= queries["budget_points"]
    assert queries["spent_points"] == sum(q["points"] for q in queries["queries"])
    commit = oracle_round(project, 0)
    assert commit.round == 1 and commit.points == queries["spent_points"]
    for name, old in before.items():
        new = load_labels(project, 1, name, sizes[name])
        np.testing.assert_array_equal(new[old >= 0], old[old >= 0])  # labels only grow
    ledger = read_ledger(project)
    assert sum(e["points"] for e in ledger) == _total(project)
    assert {e["source"] for e in ledger if e["round"] == 1} == {"oracle"}


def test_scores_and_queries_never_see_ground_truth(project, tmp_path):
    seed_round(project, "random", "region", "5%", seed=0)
    queries = _one_round(project)
    reference = (project.round_dir(0) / "queries.json").read_bytes()
    scores = tree_bytes(project.round_dir(0) / "scores")

    blind = tmp_path / "blind"
    shutil.copytree(project.root, blind)
    for path in (blind / "scenes").rglob("*.ply"):  # strip the ground truth
        scene = read_ply(path)
        scene.label = np.full(len(scene), -1)
        write_ply(path, scene)
    blind_project = Project.open(blind)
    shutil.rmtree(blind / "rounds" / "r000" / "scores")
    (blind / "rounds" / "r000" / "queries.json").unlink()
    score_round(blind_project, 0, ScoreSettings(scorer="margin", unit="region"), device="cpu")
    select_round(blind_project, 0, "3%")
    assert (blind / "rounds" / "r000" / "queries.json").read_bytes() == reference
    assert tree_bytes(blind / "rounds" / "r000" / "scores") == scores
    assert queries["queries"]


def test_two_runs_are_byte_identical(base, tmp_path):
    trees = []
    for name in ("a", "b"):
        shutil.copytree(base, tmp_path / name)
        project = Project.open(tmp_path / name)
        seed_round(project, "random", "region", "5%", seed=2)
        run_rounds(project, "entropy", rounds=2, budget="2%", options=TINY, final=False)
        trees.append({k: v for k, v in tree_bytes(tmp_path / name / "rounds").items()
                      if "/labels/" in k or k.endswith("queries.json")})
    assert trees[0] == trees[1] and len(trees[0]) > 4


def test_budget_larger_than_pool_is_refused(project):
    seed_round(project, "random", "point", "90%", seed=0)
    train(project, 0, TINY)
    score_round(project, 0, ScoreSettings(scorer="margin", unit="point"), device="cpu")
    with pytest.raises(PcalError, match="exceeds the unlabelled pool"):
        select_round(project, 0, "20%")
    assert not (project.round_dir(0) / "queries.json").exists()


def test_missing_scores_and_shards(project):
    seed_round(project, "random", "region", "5%", seed=0)
    train(project, 0, TINY)
    settings = ScoreSettings(scorer="margin", unit="region")
    assert score_round(project, 0, settings, device="cpu", shard="1/2") == 2
    with pytest.raises(PcalError, match="scores missing for 1 of 3"):
        select_round(project, 0, "3%")
    assert score_round(project, 0, settings, device="cpu", shard="2/2") == 1
    assert score_round(project, 0, settings, device="cpu") == 0  # all done: nothing rescored
    assert select_round(project, 0, "3%")["queries"]
    with pytest.raises(PcalError, match="other settings"):
        score_round(project, 0, ScoreSettings(scorer="entropy", unit="region"), device="cpu")


def _uninterrupted(base, tmp_path):
    shutil.copytree(base, tmp_path / "ref")
    ref = Project.open(tmp_path / "ref")
    seed_round(ref, "random", "region", "5%", seed=0)
    run_rounds(ref, "margin", rounds=1, budget="3%", options=_cli_options(ref), final=False)
    return tree_bytes(tmp_path / "ref" / "rounds")


def _cli_options(project):
    """The training options of :func:`_pcal_round`'s command line (the rest from the project's profile)."""
    return profile_options(project, dict(cr=0.125, steps=30, batch_size=2, device="cpu", checkpoint_every=5))


def _pcal_round(root):
    return [sys.executable, "-m", "pcal_cli", "round", "-p", str(root), "--method", "margin", "--rounds", "1",
            "--budget", "3%", "--cr", "0.125", "--steps", "30", "--checkpoint-every", "5", "--device", "cpu",
            "--no-final"]


def _kill_when(command, root, appears, timeout=120):
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    began = time.time()
    try:
        while time.time() - began < timeout and child.poll() is None:
            if appears(root):
                child.send_signal(signal.SIGKILL)
                child.wait()
                return True
            time.sleep(0.005)
        return False
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.parametrize("step", ["train", "score"])
def test_round_killed_during_a_step_finishes_the_same(base, tmp_path, step):
    reference = _uninterrupted(base, tmp_path)
    shutil.copytree(base, tmp_path / "run")
    root = tmp_path / "run"
    seed_round(Project.open(root), "random", "region", "5%", seed=0)
    r0 = root / "rounds" / "r000"
    appears = {"train": lambda r: (r0 / "model.partial.pt").exists(),
               "score": lambda r: len(list((r0 / "scores").glob("*.npz"))) >= 1}[step]
    assert _kill_when(_pcal_round(root), root, appears), f"the run ended before reaching {step}"
    done = subprocess.run(_pcal_round(root), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = tree_bytes(root / "rounds")
    keep = lambda tree: {k: v for k, v in tree.items() if "/labels/" in k or k.endswith("queries.json")}  # noqa: E731
    assert keep(result) == keep(reference)
    assert (root / "rounds" / "r001").is_dir()


def test_round_interrupted_after_select_and_during_label_finishes_the_same(base, tmp_path):
    reference = _uninterrupted(base, tmp_path)
    shutil.copytree(base, tmp_path / "run")
    project = Project.open(tmp_path / "run")
    seed_round(project, "random", "region", "5%", seed=0)
    options = _cli_options(project)
    run_rounds(project, "margin", rounds=1, budget="3%", options=options, label=False)
    # what a kill inside the label step leaves: a half-built round folder under its temporary name
    staging = project.rounds_dir / f".r001.{os.getpid() + 1}.tmp"
    (staging / "labels").mkdir(parents=True)
    (staging / "labels" / "room_000.npz").write_bytes(b"partial")
    assert project.rounds() == [0]
    run_rounds(project, "margin", rounds=1, budget="3%", options=options, final=False)
    keep = lambda tree: {k: v for k, v in tree.items() if "/labels/" in k or k.endswith("queries.json")}  # noqa: E731
    assert keep(tree_bytes(tmp_path / "run" / "rounds")) == keep(reference)


def test_cli_loop(pcal, project):
    p = project.root
    assert pcal("seed", "-p", p, "--unit", "point", "--budget", "2%").code == 0
    assert "skipped" in pcal("seed", "-p", p).err
    assert pcal("train", "-p", p, "--cr", "0.125", "--steps", "2", "--device", "cpu").code == 0
    result = pcal("score", "-p", p, "--scorer", "entropy", "--unit", "point", "--device", "cpu")
    assert result.code == 0, result.err
    result = pcal("select", "-p", p, "--budget", "50")
    assert result.code == 0, result.err and "50 of 50 budget points" in result.out
    result = pcal("label", "-p", p, "--oracle")
    assert result.code == 0, result.err
    assert "50 points labelled" in result.out
    assert _total(project) == 90 + 50
    result = pcal("round", "-p", p, "--method", "vcd", "--budget", "1%", "--cr", "0.125", "--steps", "2",
                  "--device", "cpu")
    assert result.code == 0, result.err
    assert project.rounds() == [0, 1, 2]


def test_round_draws_the_methods_seed_when_round_0_is_missing(project):
    run_rounds(project, "margin", rounds=1, options=TINY, label=False)
    assert project.rounds() == [0]
    ledger = read_ledger(project)
    assert {e["source"] for e in ledger} == {"seed"} and ledger[0]["unit"] == "region"
    assert 0 < _total(project) <= 0.03 * project.point_count("train")
    assert (project.round_dir(0) / "queries.json").is_file()


@pytest.mark.parametrize("args, fragment", [
    (("seed", "--unit", "blob"), "unknown unit"),
    (("seed", "--method", "magic"), "unknown seed method"),
    (("round", "--method", "magic"), "did you mean 'margin'"),
    (("round", "--method", "redal", "-o", "decai=0.9"), "no option 'decai'"),
    (("score", "--scorer", "magic"), "no labelling rounds"),
    (("label",), "--oracle"),
])
def test_cli_bad_inputs(pcal, project, args, fragment):
    result = pcal(*args, "-p", project.root)
    assert result.code == 2, result.err
    assert fragment in result.err and len(result.err.strip().splitlines()) == 1


def test_random_ranks_units_uniformly_whatever_their_size(project):
    """The regions random scoring ranks first are as large, on average, as the scene's regions
    (averaging uniform point scores per region ranked small regions first)."""
    seed_round(project, "random", "region", "5%", seed=0)
    chosen, expected = [], []
    for seed in range(40):
        score_round(project, 0, ScoreSettings(scorer="random", unit="region", seed=seed), force=True)
        for name in project.scenes("train"):
            with np.load(project.round_dir(0) / "scores" / f"{name}.npz") as data:
                chosen.append(data["costs"][np.argsort(-data["scores"])[:3]])
                expected.append(np.full(3, data["costs"].mean()))
    assert not (project.round_dir(0) / "model.pt").exists()  # random scoring needs no trained model
    assert abs(np.concatenate(chosen).mean() / np.concatenate(expected).mean() - 1) < 0.04  # point means: -10 %
