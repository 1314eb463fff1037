import json
import os
import subprocess
import sys

import pytest
import yaml

from pcal_cli.atomic import atomic_open, write_json
from pcal_cli.errors import PcalError
from pcal_cli.project import Project, ProjectConfig, dump_config, load_config


def _config(**overrides):
    data = {
        "dataset": "synthetic",
        "classes": ["a", "b"],
        "colors": [[1, 2, 3], [4, 5, 6]],
        "splits": {"train": ["s0", "s1"], "test": ["s2"]},
    }
    data.update(overrides)
    return data


def test_config_roundtrip_is_stable(tmp_path):
    config = ProjectConfig.from_dict(_config())
    path = tmp_path / "pcal.yaml"
    path.write_text(dump_config(config))
    again = load_config(path)
    assert again == config
    assert dump_config(again) == path.read_text()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"classes": []}, "classes"),
        ({"classes": ["a", "a"], "colors": [[0, 0, 0], [0, 0, 0]]}, "duplicate"),
        ({"colors": [[1, 2, 3]]}, "colors"),
        ({"colors": [[1, 2, 300], [0, 0, 0]]}, "colors"),
        ({"splits": {"training": ["s0"]}}, "splits"),
        ({"splits": {"train": ["../escape"]}}, "plain scene names"),
        ({"voxel_size": -1}, "voxel_size"),
        ({"channels": ["depth"]}, "channels"),
        ({"surprise": 1}, "unknown field"),
    ],
)
def test_config_validation(change, message):
    with pytest.raises(PcalError, match=message):
        ProjectConfig.from_dict(_config(**change))


def test_missing_fields_and_bad_yaml(tmp_path):
    with pytest.raises(PcalError, match="missing field"):
        ProjectConfig.from_dict({"dataset": "x"})
    path = tmp_path / "pcal.yaml"
    path.write_text("classes: [a\n")
    with pytest.raises(PcalError, match="invalid YAML"):
        load_config(path)
    path.write_text("!!python/object:os.system {}\n")  # safe_load refuses python tags
    with pytest.raises(PcalError):
        load_config(path)


def test_open_errors(tmp_path):
    with pytest.raises(PcalError, match="no project given"):
        Project.open(None)
    with pytest.raises(PcalError, match="no such project"):
        Project.open(tmp_path / "nope")
    with pytest.raises(PcalError, match="not a pcal project"):
        Project.open(tmp_path)


def test_layout_and_scene_listing(tmp_path):
    project = Project(tmp_path)
    project.write_config(ProjectConfig.from_dict(_config()))
    project = Project.open(tmp_path)
    assert project.scenes("train") == ["s0", "s1"]
    assert project.scenes("val") == []
    assert project.round_dir(3) == tmp_path / "rounds" / "r003"
    with pytest.raises(PcalError, match="unknown split"):
        project.scenes("nope")
    with pytest.raises(PcalError, match="missing"):
        project.scene_files("train")
    (tmp_path / "rounds" / "r001").mkdir(parents=True)
    (tmp_path / "rounds" / "r000").mkdir()
    (tmp_path / "rounds" / "junk").mkdir()
    assert project.rounds() == [0, 1]


def test_atomic_write_leaves_old_content_on_failure(tmp_path):
    target = tmp_path / "f.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as handle:
            handle.write("partial")
            raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_second_writer_is_refused_with_holder(tmp_path):
    project = Project(tmp_path)
    with project.lock("train"):
        with pytest.raises(PcalError, match=rf"PID {os.getpid()} .* 'train'"):
            with project.lock("score"):
                pass
    assert not project.lock_path.exists()
    with project.lock("score"):  # free again
        pass


def test_lock_held_by_another_live_process_is_refused(tmp_path):
    code = (
        "import sys, time; from pcal_cli.project import Project\n"
        "with Project(sys.argv[1]).lock('other'):\n"
        "    print('locked', flush=True); time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(PcalError, match=rf"PID {child.pid} .* 'other'"):
            with Project(tmp_path).lock("mine"):
                pass
    finally:
        child.kill()
        child.wait()


def test_stale_lock_is_taken_over_with_a_warning(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    project = Project(tmp_path)
    import socket

    project.lock_path.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                             "command": "old", "since": 0}))
    with pytest.warns(UserWarning, match="stale lock"):
        with project.lock("new"):
            assert json.loads(project.lock_path.read_text())["command"] == "new"


def test_yaml_written_is_plain(tmp_path):
    text = dump_config(ProjectConfig.from_dict(_config()))
    assert "!!" not in text
    assert yaml.safe_load(text)["classes"] == ["a", "b"]
