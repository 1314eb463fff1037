"""Sharded scoring and evaluation give exactly the results of one process."""

import json
import shutil

import pytest

from pcal_cli.errors import PcalError
from pcal_cli.evaluation.evaluate import evaluate, merge_shards
from pcal_cli.project import Project
from pcal_cli.steps.score import ScoreSettings, score_round
from pcal_cli.steps.seed import seed_round
from pcal_cli.steps.select import select_round
from pcal_cli.training.supervised import TrainOptions, train

from conftest import synthetic_project


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards") / "p"
    synthetic_project(root, 8, 1000)
    project = Project.open(root)
    seed_round(project, "random", "region", "5%", seed=0)
    train(project, 0, TrainOptions(cr=0.125, steps=2, device="cpu"))
    return root


@pytest.fixture
def project(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "p")
    return Project.open(tmp_path / "p")


def test_three_score_shards_select_exactly_what_one_process_selects(project, tmp_path):
    whole = Project.open(shutil.copytree(project.root, tmp_path / "whole"))
    settings = ScoreSettings(scorer="entropy", unit="region")
    score_round(whole, 0, settings, device="cpu")
    select_round(whole, 0, "3%")
    for i in (1, 2, 3):
        score_round(project, 0, settings, device="cpu", shard=f"{i}/3")
    select_round(project, 0, "3%")
    assert (project.round_dir(0) / "queries.json").read_bytes() == (whole.round_dir(0) / "queries.json").read_bytes()


def test_evaluation_shards_merge_to_the_unsharded_metrics(project, pcal):
    reference = evaluate(project, 0, "test", device="cpu")
    (project.round_dir(0) / "metrics.json").unlink()
    assert len(project.scenes("test")) >= 2
    for i in (1, 2):
        result = pcal("evaluate", "-p", project.root, "--shard", f"{i}/2", "--device", "cpu")
        assert result.code == 0, result.err
    with pytest.raises(PcalError, match="shard"):
        merge_shards(project, 0, "val")
    result = pcal("evaluate", "-p", project.root, "--merge")
    assert result.code == 0, result.err
    merged = json.loads((project.round_dir(0) / "metrics.json").read_text())["test"]
    assert merged == reference


def test_merge_refuses_missing_shards(project):
    evaluate(project, 0, "test", device="cpu", shard="1/3")
    with pytest.raises(PcalError, match=r"shard\(s\) \[2, 3\] of 3 missing"):
        merge_shards(project, 0, "test")
