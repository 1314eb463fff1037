"""Plugins: the worked example of docs/extending.md, installed as a package on sys.path, runs a round."""

import re
import sys
from pathlib import Path

import pytest

from pcal_cli import plugins
from pcal_cli.project import Project
from pcal_cli.rounds import read_json

DOCS = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), flags=re.S)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The example package with its dist-info (entry points from the TOML block) on sys.path."""
    site = tmp_path / "site"
    (site / "pcal_margin_plus").mkdir(parents=True)
    (site / "pcal_margin_plus" / "__init__.py").write_text(_blocks("python")[0])
    info = site / "pcal_margin_plus-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pcal-margin-plus\nVersion: 0.1\n")
    entry_points = re.sub(r'\[project\.entry-points\."([^"]+)"\]', r"[\1]", _blocks("toml")[0]).replace('"', "")
    (info / "entry_points.txt").write_text(entry_points)
    monkeypatch.syspath_prepend(str(site))
    from pcal_cli.acquisition import SCORERS
    from pcal_cli.data.datasets.registry import DATASETS
    from pcal_cli.methods import METHODS
    from pcal_cli.models import MODELS

    registries = (METHODS, SCORERS, MODELS, DATASETS)
    before = [dict(r) for r in registries]
    plugins.reset()
    yield site
    for registry, saved in zip(registries, before):
        registry.clear()
        registry.update(saved)
    plugins.ORIGINS.clear()
    plugins.reset()
    sys.modules.pop("pcal_margin_plus", None)


def test_the_documented_plugin_adds_a_scorer_method_backbone_and_dataset(plugin, pcal, tmp_path, monkeypatch):
    from pcal_cli.cli import methods as methods_cli
    from rich.console import Console

    monkeypatch.setattr(methods_cli, "out", Console(width=200, highlight=False))
    listing = pcal("methods")
    assert listing.code == 0, listing.err
    for name in ("margin_plus", "squared_margin", "narrow_minkunet", "tiny_rooms"):
        assert re.search(rf"{name}\s*│\s*pcal-margin-plus 0.1", listing.out), name
    (tmp_path / "raw").mkdir()
    proj = tmp_path / "tiny"
    assert pcal("prepare", "tiny_rooms", tmp_path / "raw", "-p", proj).code == 0
    assert pcal("seed", "-p", proj, "--budget", "20%").code == 0
    result = pcal("round", "-p", proj, "--method", "margin_plus", "--backbone", "narrow_minkunet", "--steps", "2",
                  "--cr", "0.125", "--device", "cpu", "--budget", "10%")
    assert result.code == 0, result.err
    project = Project.open(proj)
    assert project.rounds() == [0, 1]
    settings = read_json(project.round_dir(0) / "round.json", "round")
    assert settings["method"] == "margin_plus" and settings["scorer"] == "squared_margin"
    assert settings["train"]["backbone"] == "narrow_minkunet"


def test_a_broken_or_clashing_plugin_is_skipped_with_a_warning(plugin):
    info = plugin / "pcal_margin_plus-0.1.dist-info" / "entry_points.txt"
    info.write_text("[pcal.methods]\nmargin = pcal_margin_plus:METHOD\nbroken = pcal_margin_plus:NOTHING\n")
    from pcal_cli.methods import all_methods

    with pytest.warns(UserWarning) as caught:
        methods = all_methods()
    text = " ".join(str(w.message) for w in caught)
    assert "already registered" in text and "broken" in text
    assert methods["margin"].scorer == "margin" and "broken" not in methods


def test_every_registry_answers_an_unknown_name_the_same_way():
    from pcal_cli.acquisition import get_scorer
    from pcal_cli.data.datasets.registry import get_dataset
    from pcal_cli.errors import PcalError
    from pcal_cli.methods import get_method
    from pcal_cli.models import build_model
    from pcal_cli.selection import get_selector

    for kind, call in (("method", lambda: get_method("marginn")), ("scorer", lambda: get_scorer("entropyy")),
                       ("selector", lambda: get_selector("topkk")), ("dataset", lambda: get_dataset("scannett")),
                       ("backbone", lambda: build_model("spvcnnn", 3, 2))):
        try:
            call()
        except PcalError as exc:
            text = str(exc)
        else:
            raise AssertionError(f"unknown {kind} accepted")
        assert text.startswith(f"unknown {kind} ") and "choose one of: " in text and "did you mean" in text, text
    assert get_method(" Margin ").name == "margin"
