"""`pcal check`: a healthy project passes; each kind of damage is found; --repair is safe."""

import json
import shutil

import numpy as np
import pytest

from pcal_cli.check import PROBLEM, check_project, repair_project
from pcal_cli.errors import PcalError
from pcal_cli.label_files import read_label_file, write_label_file
from pcal_cli.project import Project
from pcal_cli.rounds import labelled_counts
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


def _cut_short(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_label_file_says_which_what_and_how_to_recover(project, pcal):
    path = sorted((project.round_dir(1) / "labels").glob("*.npz"))[0]
    _cut_short(path)
    problems = _problems(project)
    assert problems == [f"labels: {path}: unreadable label file (a damaged zip archive: its table of contents is "
                        f"missing (cut short?)); round 1 is the latest and not closed: delete {project.round_dir(1)} "
                        f"and run 'pcal label -p {project.root} --round 0 --oracle' again"]  # no ledger row
    assert pcal("check", "-p", project.root).code == 1

    # the advice works: the same queries give the same labels, which the ledger already counts
    shutil.rmtree(project.round_dir(1))
    assert _problems(project) == [f"ledger: the ledger records round 1, which has no complete round folder; run "
                                  f"'pcal label -p {project.root} --round 0 --oracle' again (the same inputs give "
                                  "the labels the ledger counts)"]
    assert pcal("label", "-p", project.root, "--round", "0", "--oracle").code == 0
    assert _problems(project) == []


def test_a_damaged_file_of_a_closed_round_is_restored_not_rebuilt(project):
    path = sorted((project.round_dir(0) / "labels").glob("*.npz"))[0]
    _cut_short(path)
    problems = _problems(project)
    assert problems[0] == (f"labels: {path}: unreadable label file (a damaged zip archive: its table of contents is "
                           f"missing (cut short?)); round 0 is closed (later rounds were built on it): restore "
                           f"labels/{path.name} from a backup (its SHA-256 is in "
                           f"{project.round_dir(0)}/labelling.json)")
    assert not any(p.startswith(("ledger", "growth")) for p in problems), problems
    with pytest.raises(PcalError, match=f"{path.name}: unreadable label file .*round 0 is closed"):
        labelled_counts(project, 0)


def test_repair_records_a_round_the_ledger_lacks(project, pcal):
    lines = project.ledger_path.read_text().splitlines()
    project.ledger_path.write_text("".join(line + "\n" for line in lines if json.loads(line)["round"] != 1))
    problems = _problems(project)
    assert len(problems) == 1 and "round 1: the ledger says 0 points" in problems[0]
    assert problems[0].endswith("the round is not in the ledger (a command stopped before recording it); "
                                "'pcal check --repair' records it")
    result = pcal("check", "-p", project.root, "--repair")
    assert result.code == 0 and "recorded round 1 in the ledger" in result.out
    assert project.ledger_path.read_text().splitlines() == lines
