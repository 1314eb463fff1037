"""`pcal check`: a healthy project passes; each kind of damage is found; --repair is safe."""

import json

import numpy as np
import pytest

from pcal_cli.check import PROBLEM, check_project, repair_project
from pcal_cli.label_files import read_label_file, write_label_file
from pcal_cli.project import Project
from pcal_cli.steps.round import run_rounds
from pcal_cli.steps.seed import seed_round
from pcal_cli.training.supervised import TrainOptions

from conftest import project_copy, synthetic_project


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("check") / "p"
    synthetic_project(root, 4, 1200)
    project = Project.open(root)
    seed_round(project, "random", "region", "10%", seed=0)
    run_rounds(project, "margin", rounds=1, budget="5%", options=TrainOptions(cr=0.125, steps=1, device="cpu"),
               final=False)
    return root


@pytest.fixture
def project(base, tmp_path):
    return project_copy(base, tmp_path)


def _problems(project):
    return [f"{f.check}: {f.detail}" for f in check_project(project) if f.status == PROBLEM]


def test_a_healthy_project_passes_and_closed_rounds_have_manifests(project, pcal):
    assert project.rounds() == [0, 1]
    manifest = json.loads((project.round_dir(0) / "manifest.json").read_text())
    assert {"labelling.json", "model.pt", "queries.json", "round.json"} <= set(manifest["files"])
    assert not (project.round_dir(1) / "manifest.json").exists()  # the open round
    assert _problems(project) == []
    result = pcal("check", "-p", project.root)
    assert result.code == 0 and "problem" not in result.out


def test_each_damage_is_reported(project, pcal):
    labels = next((project.round_dir(1) / "labels").glob("*.npz"))
    array = read_label_file(labels)
    array[np.flatnonzero(array == -1)[0]] = 0
    write_label_file(labels, array)  # edited behind pcal's back
    (project.round_dir(0) / "queries.json").write_text("{}\n")  # a closed round rewritten
    lines = project.ledger_path.read_text().splitlines()
    project.ledger_path.write_text("\n".join(lines[:-1]) + "\n")  # a ledger entry lost
    (project.root / "scenes" / "train" / ".room_000.ply.123.tmp").write_bytes(b"half")
    problems = " | ".join(_problems(project))
    assert "checksum" in problems
    assert "queries.json changed after the round was closed" in problems
    assert "the ledger says" in problems
    assert "left by an interrupted write" in problems
    result = pcal("check", "-p", project.root)
    assert result.code == 1 and "problem(s) found" in result.out


def test_repair_removes_leftovers_but_never_a_completed_round(project, pcal):
    staging = project.rounds_dir / ".r002.999.tmp"
    (staging / "labels").mkdir(parents=True)
    (project.round_dir(1) / ".model.pt.42.tmp").write_bytes(b"x")
    incomplete = project.rounds_dir / "r005"
    incomplete.mkdir()
    before = sorted(p.name for p in (project.round_dir(1) / "labels").iterdir())
    result = pcal("check", "-p", project.root, "--repair")
    assert result.code == 0, result.out
    assert not staging.exists() and not incomplete.exists()
    assert not (project.round_dir(1) / ".model.pt.42.tmp").exists()
    assert project.rounds() == [0, 1]
    assert sorted(p.name for p in (project.round_dir(1) / "labels").iterdir()) == before
    assert repair_project(project) == []
