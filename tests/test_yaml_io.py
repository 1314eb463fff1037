"""Duplicate keys in any YAML file a user gives are one clear error naming the key and the lines."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from pcal_cli.data.datasets.folder import read_class_file
from pcal_cli.data.datasets.splits import read_split_file
from pcal_cli.errors import PcalError
from pcal_cli.project import load_config
from pcal_cli.weak.tags import read_tags_file
from pcal_cli.yaml_io import UniqueKeyLoader, load_yaml


def test_load_yaml_is_safe_load_without_duplicates():
    text = "a: 1\nb: [x, {c: 2, d: 3}]\nbase: &b {k: 1}\nmerged: {<<: *b, k: 2}\n"
    assert load_yaml(text, "f.yaml") == yaml.safe_load(text)
    assert issubclass(UniqueKeyLoader, yaml.SafeLoader)
    with pytest.raises(yaml.YAMLError):  # python tags stay refused, and other YAML errors propagate
        load_yaml("!!python/object:os.system {}\n", "f.yaml")


@pytest.mark.parametrize("text, message", [
    ("classes: [a, b]\nids:\n  1: a\n  2: b\n  2: a\n", "f.yaml line 5: duplicate key 2 (already given on line 4)"),
    ("train: [s1]\ntest: [s2]\ntrain: [s3]\n", "f.yaml line 3: duplicate key 'train' (already given on line 1)"),
    ("ids: {2: a, 2: b}\n", "f.yaml line 1: duplicate key 2 (already given on line 1)"),
    ("- {x: 1}\n- {y: 1, y: 2}\n", "f.yaml line 2: duplicate key 'y' (already given on line 2)"),
    ("1: a\ntrue: b\n", "f.yaml line 2: duplicate key True (already given on line 1)"),  # equal as Python keys
])
def test_duplicate_keys_name_the_key_and_both_lines(text, message):
    with pytest.raises(PcalError) as caught:
        load_yaml(text, "f.yaml")
    assert str(caught.value) == message


def test_class_file_refuses_a_raw_id_given_twice(tmp_path):
    path = tmp_path / "classes.yaml"
    path.write_text("classes: [ground, building]\nids:\n  2: ground\n  2: building\n")
    with pytest.raises(PcalError, match=r"^.*classes\.yaml line 4: duplicate key 2 \(already given on line 3\)$"):
        read_class_file(path)
    path.write_text("classes: [ground, building]\nids: {2: ground, '2': building}\n")  # distinct YAML keys, one id
    with pytest.raises(PcalError, match="raw id 2 is given twice under 'ids'"):
        read_class_file(path)


def test_split_file_refuses_duplicate_keys(tmp_path):
    path = tmp_path / "split.yaml"
    path.write_text("s1: train\ns2: test\ns1: val\n")
    with pytest.raises(PcalError, match=r"split\.yaml line 3: duplicate key 's1' \(already given on line 1\)"):
        read_split_file(path)
    path.write_text("s1 train\ns2 test\n")  # the text form is not YAML mapping: still read
    assert read_split_file(path) == {"s1": "train", "s2": "test"}
    path.write_text("train: [00_000001, 001, yes]\ntest:\n")  # names stay text, not 1, 1 and True
    assert read_split_file(path) == {"00_000001": "train", "001": "train", "yes": "train"}


def test_pcal_yaml_refuses_duplicate_keys(tmp_path):
    path = tmp_path / "pcal.yaml"
    path.write_text("dataset: folder\nclasses: [a]\ncolors: [[1, 2, 3]]\nsplits: {train: [s]}\n"
                    "channels: [rgb]\nchannels: []\n")
    with pytest.raises(PcalError, match=r"pcal\.yaml line 6: duplicate key 'channels' \(already given on line 5\)"):
        load_config(path)


def test_tags_yaml_refuses_a_scene_twice_with_its_lines(tmp_path):
    path = tmp_path / "tags.yaml"
    path.write_text("s1: [a]\ns2: [b]\ns1: [b]\n")
    with pytest.raises(PcalError, match=r"'s1' is listed twice \(line 1 and line 3\)"):
        read_tags_file(path, ["a", "b"], ["s1", "s2"])
    path.write_text("s1: [a]\ns2: [a, b]\n")
    tags = read_tags_file(path, ["a", "b"], ["s1", "s2"])
    assert {k: v.tolist() for k, v in tags.items()} == {"s1": [True, False], "s2": [True, True]}
    assert np.asarray(tags["s1"]).dtype == bool
