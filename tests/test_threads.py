"""Thread choice: --threads, OMP_NUM_THREADS, affinity and cgroup quota; plain progress lines."""

import io

import pytest

from pcal_cli.cli.common import PlainProgress
from pcal_cli.errors import PcalError
from pcal_cli.threads import cgroup_quota, choose_threads, usable_cpus


def test_threads_follow_request_then_environment_then_usable_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert choose_threads(4, {}, tmp_path) == 4
    assert choose_threads(None, {"OMP_NUM_THREADS": "2"}, tmp_path) == 2
    assert choose_threads(None, {}, tmp_path) == 3  # the affinity mask, not the machine's cores
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # a 1.5-CPU quota (v2)
    assert cgroup_quota(tmp_path) == 1.5 and usable_cpus(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(tmp_path) is None and usable_cpus(tmp_path) == 3
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000")  # v1: one CPU
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert usable_cpus(tmp_path) == 1
    with pytest.raises(PcalError, match="at least 1"):
        choose_threads(0, {}, tmp_path)
    with pytest.raises(PcalError, match="OMP_NUM_THREADS"):
        choose_threads(None, {"OMP_NUM_THREADS": "many"}, tmp_path)


def test_root_threads_option_sets_torch_threads(pcal, monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        result = pcal("--threads", "1", "check", "--help")
        assert result.code == 0 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert pcal("--threads", "0", "check", "--help").code == 2


def test_plain_progress_lines_have_step_item_rate_and_time_left(monkeypatch):
    clock = iter(range(0, 1000, 10))  # every call is 10 s later
    monkeypatch.setattr("pcal_cli.cli.common.time.monotonic", lambda: next(clock))
    stream = io.StringIO()
    progress = PlainProgress(interval=25, stream=stream)
    task = progress.add_task("Training (round 1)", total=None, item="")
    for step in range(1, 11):
        progress.update(task, completed=step, total=10, item=f"loss {1 / step:.2f}")
    progress.update(task, completed=10, total=10)  # a repeated end is not printed twice
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("Training (round 1): 3/10 (30%), loss 0.33, 0.10/s, 1m10s left"), lines
    assert lines[-1].startswith("Training (round 1): 10/10 (100%)") and "done in" in lines[-1]
    assert len(lines) == 4  # steps 3, 6 and 9 at the 25 s interval, then the end


def test_commands_print_plain_progress_when_stderr_is_not_a_terminal(pcal, tmp_path, monkeypatch):
    monkeypatch.setenv("PCAL_PROGRESS_SECONDS", "0")
    result = pcal("prepare", "synthetic", "-p", tmp_path / "p", "--scenes", "2", "--points", "300")
    assert result.code == 0, result.err
    assert "Preparing scenes: 2/2 (100%)" in result.err
