"""`pcal compare` on a tiny project: folder tree, shared seeds, report, skip and resume."""

import re
import shutil

import pytest
from rich.console import Console

from pcal_cli.cli import report as report_cli

from pcal_cli.errors import PcalError
from pcal_cli.project import Project
from pcal_cli.rounds import read_json
from pcal_cli.steps.compare import CompareSettings, compare, run_folder
from pcal_cli.training.supervised import TrainOptions

from conftest import project_copy, synthetic_project, tree_bytes

TINY = TrainOptions(cr=0.125, steps=2, batch_size=2, device="cpu")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare") / "p"
    synthetic_project(root, 5, 1500)
    return root


@pytest.fixture
def project(base, tmp_path):
    return project_copy(base, tmp_path)


def _settings(**kwargs):
    values = dict(methods=["random", "margin"], seeds=2, rounds=1, budget="2%", seed_budget="5%", train=TINY)
    return CompareSettings(**{**values, **kwargs})


def test_compare_tree_shared_seed_report_and_skip(project, pcal, monkeypatch):
    folders = compare(project, _settings())
    assert sorted(p.relative_to(project.root).as_posix() for p in folders) == [
        "compare/margin/s0", "compare/margin/s1", "compare/random/s0", "compare/random/s1"]
    for folder in folders:
        run = Project.open(folder)
        assert run.rounds() == [0, 1] and (folder / "run.json").is_file()
        assert (folder / "full" / "metrics.json").is_file()
        assert (folder / "scenes").is_symlink()  # no copies of the PLYs
    for seed in (0, 1):  # the same initial set for every method of a seed
        a = tree_bytes(run_folder(project, "random", seed) / "rounds" / "r000" / "labels")
        b = tree_bytes(run_folder(project, "margin", seed) / "rounds" / "r000" / "labels")
        assert a == b and a
    assert tree_bytes(run_folder(project, "margin", 0) / "rounds" / "r000" / "labels") != \
        tree_bytes(run_folder(project, "margin", 1) / "rounds" / "r000" / "labels")
    monkeypatch.setattr(report_cli, "out", Console(width=200, highlight=False))
    result = pcal("report", project.root / "compare")
    assert result.code == 0, result.err
    assert re.search(r"@ \d+\.\d\d% \(\d\.\d\d×\)", result.out), result.out  # % labelled and ratio to full
    assert "per-class" in result.out and "ceiling" in result.out and "margin" in result.out
    assert (project.root / "compare" / "report" / "learning_curve.png").stat().st_size > 0
    said = []
    before = tree_bytes(project.root / "compare" / "margin")
    compare(project, _settings(), say=said.append)
    assert said == [] and tree_bytes(project.root / "compare" / "margin") == before  # finished runs skipped
    with pytest.raises(PcalError, match="other rounds"):
        compare(project, _settings(rounds=2))


def test_an_interrupted_comparison_finishes_like_an_uninterrupted_one(project, tmp_path):
    clean = Project.open(shutil.copytree(project.root, tmp_path / "clean"))
    settings = _settings(methods=["margin"], seeds=1, full_reference=False)
    compare(clean, settings)

    def stop(done, total, loss):
        if done == 2 and calls.append(done) is None and len(calls) == 2:
            raise KeyboardInterrupt  # in the second training of the margin run

    calls: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        compare(project, settings, on_step=stop)
    assert not (run_folder(project, "margin", 0) / "run.json").exists()
    compare(project, settings)
    resumed, uninterrupted = run_folder(project, "margin", 0), run_folder(clean, "margin", 0)
    assert Project.open(resumed).rounds() == [0, 1]
    assert tree_bytes(resumed / "rounds" / "r001" / "labels") == tree_bytes(uninterrupted / "rounds" / "r001" / "labels")
    for part in ("rounds/r000/queries.json", "ledger.jsonl", "rounds/r001/metrics.json"):
        assert (resumed / part).read_bytes() == (uninterrupted / part).read_bytes(), part
    assert read_json(run_folder(project, "margin", 0) / "run.json", "run")["rounds"] == 1


@pytest.mark.parametrize("kwargs, message", [({"methods": ["magic"]}, "unknown method"),
                                             ({"methods": ["margin", "margin"]}, "twice"),
                                             ({"seeds": 0}, "at least 1"),
                                             ({"seed_method": "oracle"}, "seed-method")])
def test_compare_bad_settings(project, kwargs, message):
    with pytest.raises(PcalError, match=message):
        compare(project, _settings(**kwargs))
    assert not (project.root / "compare").exists()
