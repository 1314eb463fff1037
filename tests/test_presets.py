"""Every method preset runs a round on a fresh synthetic project with its own defaults."""

import warnings

import pytest

from pcal_cli.methods import METHODS
from pcal_cli.project import Project
from pcal_cli.steps.round import run_rounds
from pcal_cli.training.supervised import TrainOptions

from conftest import project_copy


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """The default synthetic project (``pcal prepare synthetic``'s defaults, smaller rooms)."""
    from pcal_cli.prepare import prepare_project

    root = tmp_path_factory.mktemp("presets") / "p"
    prepare_project("synthetic", None, root, {"scenes": 6, "points": 4000})
    return root


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_preset_runs_with_its_defaults(fresh, tmp_path, method):
    project = project_copy(fresh, tmp_path)
    options = TrainOptions(cr=0.125, steps=2, finetune_steps=2, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small budgets on tiny rooms are warned about, not refused
        last = run_rounds(project, method, rounds=1, options=options)
    assert last >= 1 or method == "wsegpc"
    assert Project.open(project.root).rounds()
