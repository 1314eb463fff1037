"""`pcal seed --method seedal` on tiny synthetic projects: files, budget, sources, determinism."""

import json
import shutil

import numpy as np
import pytest

from pcal_cli.errors import PcalError
from pcal_cli.project import Project
from pcal_cli.rounds import labelled_counts, read_json, read_ledger
from pcal_cli.steps.round import run_rounds
from pcal_cli.steps.seed import seed_round
from pcal_cli.training.supervised import MODEL_FILE, TrainOptions, train

from conftest import project_copy, synthetic_project, tree_bytes


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("seedal") / "p"
    synthetic_project(root, 9, 1200)
    return root


@pytest.fixture
def project(base, tmp_path):
    return project_copy(base, tmp_path)


def test_seedal_seed_labels_whole_scenes_within_the_budget(project, pcal):
    result = pcal("seed", "-p", project.root, "--method", "seedal", "--budget", "40%")
    assert result.code == 0, result.err
    assert "SeedAL objective" in result.out
    report = read_json(project.round_dir(0) / "seed.json", "seed")
    chosen = [e["scene"] for e in report["scenes"]]
    counts = labelled_counts(project, 0)
    assert sorted(counts) == sorted(chosen) and all(v == 1200 for v in counts.values())
    assert sum(counts.values()) <= 0.40 * project.point_count("train")
    assert report["status"] in ("optimal", "all_fit") and report["objective"] >= 0
    assert {e["source"] for e in read_ledger(project)} == {"seed"}
    first = tree_bytes(project.round_dir(0))
    seed_round(project, "seedal", None, "40%", force=True)
    again = tree_bytes(project.round_dir(0))  # same inputs, same seed: same files (but the timing)
    timing = lambda files: {**json.loads(files.pop("seed.json")), "seconds": 0}  # noqa: E731
    assert timing(again) == timing(first) and again == first
    result = pcal("report", "-p", project.root, "--out", project.root / "report")
    assert "seed diversity" in result.out, result.out


def test_seedal_with_image_and_model_features(project, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in project.scenes("train"):
        np.save(images / f"{name}.npy", rng.normal(size=(6, 8)).astype(np.float32))
    seed_round(project, "seedal", None, "30%", options={"features": f"images:{images}"})
    assert read_json(project.round_dir(0) / "seed.json", "seed")["features"].startswith("images:")
    # a model of the project (here: trained on the seed itself) gives region features
    train(project, 0, TrainOptions(cr=0.125, steps=1, device="cpu"))
    other = Project.open(shutil.copytree(project.root, tmp_path / "q"))
    shutil.rmtree(other.round_dir(0))
    other.ledger_path.write_text("")
    seed_round(other, "seedal", None, "30%", options={"features": f"model:{project.round_dir(0) / MODEL_FILE}",
                                                     "device": "cpu"})
    assert labelled_counts(other, 0)


@pytest.mark.parametrize("kwargs, message", [
    ({"unit": "region"}, "whole scenes"),
    ({"budget": "20/scene"}, "percent or a number"),
    ({"budget": "1%"}, "no scene fits"),
    ({"seedal": {"features": "pictures"}}, "--features"),
    ({"seedal": {"features": "images:/nonexistent"}}, "no image descriptors"),
    ({"seedal": {"solver": "annealing"}}, "unknown SeedAL solver"),
])
def test_seedal_bad_inputs_write_nothing(project, kwargs, message):
    args = {"unit": None, "budget": "30%", **kwargs}
    with pytest.raises(PcalError, match=message):
        seed_round(project, "seedal", args["unit"], args["budget"], options=args.get("seedal"))
    assert project.rounds() == [] and read_ledger(project) == []


def test_round_accepts_seedal_as_the_seed_method(project):
    tiny = TrainOptions(cr=0.125, steps=1, device="cpu")
    run_rounds(project, "margin", rounds=1, budget="2%", options=tiny, seed_method="seedal", seed_budget="30%",
               label=False)
    assert (project.round_dir(0) / "seed.json").is_file()
    assert read_ledger(project)[0]["unit"] == "scene"
