"""Fault injection, a sample for CI: SIGKILL a step part-way, run it again, check the project.

The full run is ``benchmarks/fault_injection.py`` (every step, more trials, crash points). Here,
on the tiny synthetic project of :mod:`testing.faults`: a seeded random kill of each of seed,
train, score, select, label --oracle and round, drawn within the time the step holds the project
lock (so that the kills land mid-run); a rerun of each finished step (a kill that comes after the
last write); kills at exact places (crash points) where an interruption is most delicate; and
checks that the checker itself catches broken projects.

References and reruns run in this process (``FaultHarness(inprocess=True)``); each killed run is
a real ``python -m pcal_cli`` subprocess.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pcal_cli.label_files import read_label_file, write_label_file

from testing.faults import FaultHarness, check_invariants, diff_snapshots, snapshot

SEED = 20261122  # the kill delays are drawn from it: a failing trial names its seed and delay
TRIALS = {"seed": 2, "train": 1, "score": 1, "select": 2, "label-oracle": 2, "round": 1}


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return FaultHarness(tmp_path_factory.mktemp("faults"), inprocess=True)


@pytest.mark.parametrize("step", list(TRIALS))
def test_a_killed_step_finishes_like_an_uninterrupted_run(harness, step):
    report = harness.run_trials(step, TRIALS[step], seed=SEED)
    assert report.mid_run >= 1, f"no kill landed while {step} ran: {[t.kill_point for t in report.trials]}"
    assert not report.failures, report.describe()


@pytest.mark.parametrize("step", ["seed", "train", "score", "select", "label-oracle", "label-import"])
def test_rerunning_a_finished_step_changes_nothing(harness, step):
    """A kill that lands after the last write (while the command prints or exits): the rerun must
    succeed and leave the files of the uninterrupted run."""
    result = harness.rerun_finished(step)
    assert not result.failed, result.describe()


@pytest.mark.parametrize("step", ["seed", "label-oracle"])
def test_kill_between_the_new_round_folder_and_the_ledger(harness, step):
    """SIGKILL right after the new round folder is renamed into place, before the ledger records
    it (docs/loop.md: 'an interruption between the two is repaired by the next command')."""
    result = harness.trial(step, "crash-ledger", crash=("pcal_cli.rounds:sync_ledger", 1))
    assert result.killed, "the command never reached the ledger update"
    assert not result.failed, result.describe()


def test_export_killed_before_its_manifest(harness):
    """SIGKILL after the scene files of `pcal label export` are written, before manifest.json:
    running the export again must finish it."""
    result = harness.trial("label-export", "crash-manifest", crash=("pcal_cli.annotation.export:write_json", 1))
    assert result.killed
    assert not result.failed, result.describe()


def test_round_killed_in_its_final_training(harness):
    """SIGKILL while `pcal round` trains the newly labelled round (after its last labelling): the
    rerun must finish that training, not run another round."""
    result = harness.trial("round", "crash-final", crash=("pcal_cli.steps.round:train_and_evaluate", 2))
    assert result.killed
    assert not result.failed, result.describe()


# -- the checker catches what it should ------------------------------------------------------------
def _broken(harness, tmp_path, name="label-oracle"):
    target = tmp_path / "p"
    shutil.copytree(harness.reference(name).result, target, symlinks=True)
    assert check_invariants(target) == []
    return target


def test_the_checker_catches_lost_and_changed_labels(harness, tmp_path):
    project = _broken(harness, tmp_path)
    r0, r1 = project / "rounds" / "r000" / "labels", project / "rounds" / "r001" / "labels"
    name = next(p.name for p in sorted(r0.glob("*.npz")) if (r1 / p.name).is_file())
    old, labels = read_label_file(r0 / name), read_label_file(r1 / name)
    known = np.flatnonzero(old >= 0)
    labels[known[0]] = -1  # a label of round 0 lost in round 1
    labels[known[1]] = (old[known[1]] + 1) % 13  # and one that changed class
    write_label_file(r1 / name, labels)
    problems = check_invariants(project, settled=False)
    assert any("are unknown again" in p for p in problems), problems
    assert any("changed class" in p for p in problems), problems
    assert any("the label files gained" in p for p in problems), problems  # the counts no longer match


def test_the_checker_catches_ledger_temporaries_and_torn_files(harness, tmp_path):
    project = _broken(harness, tmp_path)
    reference = snapshot(project)
    ledger = project / "ledger.jsonl"
    lines = ledger.read_text().splitlines()
    older = [line for line in lines if json.loads(line)["round"] < 1]
    ledger.write_text("".join(line + "\n" for line in older))  # round 1 not recorded yet
    assert check_invariants(project, settled=False) == []  # a kill may leave exactly this
    assert any("does not record round(s) [1]" in p for p in check_invariants(project, settled=True))
    ledger.write_text("\n".join(lines[:-1] + [json.dumps({**json.loads(lines[-1]), "points": 1})]) + "\n")
    assert any("the ledger records" in p for p in check_invariants(project, settled=False))
    (project / "rounds" / "r001" / "queries.json.tmp").write_text("{")
    (project / "rounds" / "r000" / "queries.json").write_text('{"round": 0, "que')
    problems = check_invariants(project, settled=False)
    assert any("visible temporary file" in p for p in problems), problems
    assert any("r000/queries.json: incomplete" in p for p in problems), problems
    shutil.rmtree(project / "rounds" / "r001" / "labels")
    assert any("no labels/ folder" in p for p in check_invariants(project, settled=False))
    (project / ".pcal.lock").write_text("{}")
    assert any(".pcal.lock left behind" in p for p in check_invariants(project, settled=True))
    differences = diff_snapshots(reference, snapshot(project))
    assert any(d.startswith("differs: ledger.jsonl") for d in differences), differences
    assert any(d.startswith("missing: rounds/r001/labels/") for d in differences), differences
