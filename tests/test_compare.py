"""`pcal compare` on a tiny project: folder tree, shared seeds, report, skip and resume."""

import re
import shutil

import pytest
from rich.console import Console

from pcal_cli.cli import report as report_cli

from pcal_cli.errors import PcalError
from pcal_cli.project import Project
from pcal_cli.rounds import read_json
from pcal_cli.steps.compare import CompareSettings, compare, ready_jobs, run_folder
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
    assert "points bought per round" in result.out and "classes of the ground truth" in result.out
    assert re.search(r"margin: \d+\.\d mIoU = \d+ % of full supervision with \d+\.\d\d % of the points labelled "
                     r"\(round 1, 2 seed\(s\)\); random at the same points: \d+\.\d", result.out), result.out
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


def test_round0_and_reference_are_trained_once_per_seed_and_shared(project, monkeypatch):
    import numpy as np

    import pcal_cli.steps.compare as compare_step
    import pcal_cli.steps.engine as round_step

    trained = []

    def counting(real):
        def wrapper(proj, round_index, options, **kwargs):
            result = real(proj, round_index, options, **kwargs)
            if not result.skipped:
                trained.append((Path(proj.root).relative_to(project.root).as_posix(), round_index, options.steps,
                                options.warm_start))
            return result
        return wrapper

    from pathlib import Path

    monkeypatch.setattr(round_step, "train", counting(round_step.train))
    monkeypatch.setattr(compare_step, "train", counting(compare_step.train))
    settings = _settings(methods=["random", "margin", "hpal"], budget="1%", full_steps=3)
    compare(project, settings)
    round0 = [t for t in trained if t[1] == 0]
    assert sorted(t[0] for t in round0) == ["compare/_seed/s0", "compare/_seed/s1"]
    full = [t for t in trained if t[1] is None]
    assert sorted(t[0].split("/")[0] + "/" + t[0].split("/")[2] for t in full) == ["references/s0", "references/s1"]
    assert {t[2] for t in full} == {3}
    later = [t for t in trained if t[1] not in (0, None)]
    assert len(later) == 6 and all(t[3] for t in later)  # every method fine-tunes, hpal included
    for seed in (0, 1):  # every run holds seed s's one round-0 network and its metrics
        shared = (project.root / "compare" / "_seed" / f"s{seed}" / "rounds" / "r000" / "model.pt").read_bytes()
        for method in settings.methods:
            r000 = run_folder(project, method, seed) / "rounds" / "r000"
            assert (r000 / "model.pt").read_bytes() == shared and (r000 / "metrics.json").is_file()
        spent = {m: read_json(run_folder(project, m, seed) / "rounds" / "r000" / "queries.json", "q")["spent_points"]
                 for m in settings.methods}
        region_sizes = np.concatenate([np.load(p)["costs"] for p in
                                       (run_folder(project, "random", seed) / "rounds" / "r000" / "scores").glob("*.npz")])
        assert max(spent.values()) - min(spent.values()) <= np.median(region_sizes), spent
    trained.clear()
    compare(project, settings)
    assert trained == []  # a rerun reuses everything


def test_compare_refuses_budgets_per_scene(project):
    with pytest.raises(PcalError, match="counts budgets in points"):
        compare(project, _settings(budget="3/scene"))


def test_workers_give_the_files_of_one_process_and_names_share_references(project, tmp_path, monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)  # one thread per worker
    serial = Project.open(shutil.copytree(project.root, tmp_path / "serial"))
    settings = _settings(methods=["random", "margin"], seeds=2)
    compare(serial, settings)
    compare(project, _settings(methods=["random", "margin"], seeds=2, workers=2))
    for method in ("random", "margin"):
        for seed in (0, 1):
            a, b = run_folder(serial, method, seed), run_folder(project, method, seed)
            assert tree_bytes(a / "rounds" / "r001" / "labels") == tree_bytes(b / "rounds" / "r001" / "labels")
            for part in ("rounds/r000/queries.json", "rounds/r001/metrics.json", "full/metrics.json"):
                assert (a / part).read_bytes() == (b / part).read_bytes(), part
    import pcal_cli.steps.compare as compare_step

    retrained = []
    monkeypatch.setattr(compare_step, "train", lambda *a, **k: retrained.append(a))
    compare(project, _settings(methods=["margin"], seeds=2, seed_unit="point", name="points"))
    assert retrained == []  # the second comparison reuses the references of the first
    assert (project.root / "points" / "margin" / "s1" / "full" / "metrics.json").is_file()


def test_runs_wait_for_their_own_seeds_round0_only():
    jobs = [("round0", None, 0), ("round0", None, 1), ("reference", None, 0), ("doubled", None, 0),
            ("run", "random", 0), ("run", "margin", 0), ("run", "random", 1)]
    assert ready_jobs(jobs, {0, 1}) == jobs[:4]  # no run before its round 0; references at once
    assert ready_jobs(jobs[4:], {1}) == jobs[4:6]  # seed 0's round 0 done: its runs, not seed 1's
    assert ready_jobs(jobs[4:], set()) == jobs[4:]


def test_convergence_check_trains_seed0_reference_twice_as_long(project, pcal, monkeypatch):
    compare(project, _settings(methods=["random", "margin"], seeds=1, full_steps=2, convergence_check=True))
    check = read_json(project.root / "compare" / "convergence.json", "check")
    assert check["steps"] == 2 and check["steps_doubled"] == 4
    assert check["change"] == pytest.approx(check["miou_doubled"] - check["miou"])
    monkeypatch.setattr(report_cli, "out", Console(width=200, highlight=False))
    result = pcal("report", project.root / "compare")
    assert result.code == 0 and "convergence check (seed 0)" in result.out, result.err
