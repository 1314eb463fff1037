"""``pcal train`` under ``torchrun --nproc_per_node 2`` (gloo on the CPU) trains the weights of the
single-process run with the same global batch, writes the same checkpoint format, and resumes a
partial checkpoint.

The optimiser here is SGD: Adam divides every gradient component by its own magnitude, so a
component that is zero in exact arithmetic (batch norm cancels it) but rounding noise in floating
point moves its weight by about the learning rate with a random sign; two single-process runs
with different thread counts already differ that way. SGD keeps rounding differences at rounding
size, which makes a tight tolerance meaningful.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import synthetic_project
from pcal_cli.errors import PcalError
from pcal_cli.project import Project
from pcal_cli.training import distributed
from pcal_cli.training.checkpoint import load_checkpoint
from pcal_cli.training.supervised import TrainOptions, train

REPO = Path(__file__).resolve().parents[1]
#: 4 training scenes of 800 points: every step takes all 4 (2 per process), cropped to 600 points
OPTIONS = dict(backbone="minkunet", cr=0.125, steps=4, batch_size=4, max_points=600, lr=0.002, optimizer="sgd",
               device="cpu", checkpoint_every=2, seed=3, semi="none", reg="none", recipe="supervised",
               warm_start=False)  # what the CLI passes, so that the resolved configs match
FLAGS = ["--full", "--backbone", "minkunet", "--cr", "0.125", "--steps", "4", "--batch-size", "4",
         "--max-points", "600", "--lr", "0.002", "--optimizer", "sgd", "--device", "cpu", "--checkpoint-every", "2",
         "--seed", "3"]
ATOL = 1e-5


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return synthetic_project(tmp_path_factory.mktemp("ddp") / "base", 6, 800)


@pytest.fixture(scope="module")
def single(base, tmp_path_factory):
    """The single-process reference: final weights (and the checkpoint) of an uninterrupted run."""
    root = tmp_path_factory.mktemp("single") / "p"
    shutil.copytree(base, root)
    result = train(Project.open(root), None, TrainOptions(**OPTIONS))
    return load_checkpoint(result.path)


def _copy(base: Path, tmp_path: Path) -> Path:
    shutil.copytree(base, tmp_path / "p")
    return tmp_path / "p"


def _torchrun(*args: str | Path, processes: int = 2) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m pcal_cli ...`` (a local
    rendezvous on a free port), with none of this process's own torchrun variables."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", COLUMNS="200")  # one thread, like torchrun; a wide table
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "-m", "pcal_cli", *map(str, args)]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _assert_same_weights(state: dict, reference: dict) -> None:
    weights, expected = state["model"], reference["model"]
    assert list(weights) == list(expected)  # same keys, same order: no "module." prefix
    assert not any(key.startswith("module.") for key in weights)
    for key, value in expected.items():
        assert weights[key].dtype == value.dtype and weights[key].shape == value.shape, key
        if value.is_floating_point():
            assert torch.allclose(weights[key], value, rtol=0.0, atol=ATOL), \
                f"{key}: max difference {(weights[key] - value).abs().max():.3g}"
        else:
            assert torch.equal(weights[key], value), key  # num_batches_tracked


def test_torchrun_two_processes_train_the_single_process_weights(base, single, tmp_path):
    root = _copy(base, tmp_path)
    run = _torchrun("train", "-p", root, *FLAGS)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.count("trained full supervision") == 1  # rank 0 alone reports
    assert "(2 processes)" in run.stdout
    state = load_checkpoint(root / "full" / "model.pt")
    assert state.keys() == single.keys() and state["step"] == single["step"] == 4
    assert state["config"] == single["config"]  # same resolved settings: the same checkpoint format
    assert not (root / "full" / "model.partial.pt").exists()
    _assert_same_weights(state, single)
    # the training moved the weights far beyond the tolerance: the equality is not trivial
    untrained = _untrained(single["config"])
    moved = max(float((single["model"][k] - v).abs().max()) for k, v in untrained.items() if v.is_floating_point())
    assert moved > 100 * ATOL


def _untrained(config: dict) -> dict[str, torch.Tensor]:
    from pcal_cli.models import build_model

    torch.manual_seed(config["seed"])
    return build_model(config["backbone"], config["in_channels"], config["num_classes"], cr=config["cr"],
                       seed=config["seed"]).state_dict()


def test_torchrun_resumes_a_partial_checkpoint_of_a_single_process_run(base, single, tmp_path):
    root = _copy(base, tmp_path)

    def interrupt(done, total, loss):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(Project.open(root), None, TrainOptions(**OPTIONS), on_step=interrupt)
    assert load_checkpoint(root / "full" / "model.partial.pt")["step"] == 2
    run = _torchrun("train", "-p", root, *FLAGS, "--resume")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "resumed at 2" in run.stdout
    assert not (root / "full" / "model.partial.pt").exists()
    _assert_same_weights(load_checkpoint(root / "full" / "model.pt"), single)


def test_unsupported_settings_under_torchrun_are_one_line_errors(pcal, base, tmp_path, monkeypatch):
    root = _copy(base, tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun sets; the checks come before joining the group
    monkeypatch.setenv("RANK", "0")
    result = pcal("train", "-p", root, "--full", "--batch-size", "3", "--device", "cpu")
    assert result.code == 2
    assert "--batch-size 3 does not divide among 2 torchrun processes" in result.err
    assert len(result.err.strip().splitlines()) == 1
    result = pcal("train", "-p", root, "--full", "--batch-size", "2", "--semi", "teacher-student", "--device", "cpu")
    assert result.code == 2 and "--semi teacher-student is not supported under torchrun yet" in result.err
    assert not (root / "full").exists()


def test_helpers_are_no_ops_in_one_process():
    assert distributed.world_size() == 1 and not distributed.is_distributed() and distributed.is_main()
    assert distributed.share(4) == range(0, 4)
    assert distributed.sum_over_ranks(2.5) == 2.5
    distributed.check_same("anything", 1, 2)
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    assert distributed.backend_for(torch.device("cuda", 0)) == "nccl"
    with pytest.raises(PcalError, match="scene-tags is not supported under torchrun"):
        distributed.check_supported(TrainOptions(recipe="scene-tags", batch_size=2), 2)
    with pytest.raises(PcalError, match="hybrid-contrastive is not supported under torchrun"):
        distributed.check_supported(TrainOptions(reg="hybrid-contrastive", batch_size=2), 2)
    distributed.check_supported(TrainOptions(batch_size=3), 1)
    with pytest.raises(PcalError, match="3 scenes of a step do not divide among 2"):
        distributed.check_scene_count(3, 4, 2)
    distributed.check_scene_count(4, 8, 2)


def test_other_commands_refuse_to_run_under_torchrun(pcal, base, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = pcal("evaluate", "-p", base, "--full", "--device", "cpu")
    assert result.code == 2 and "'pcal evaluate' does not run under torchrun" in result.err
    assert len(result.err.strip().splitlines()) == 1
