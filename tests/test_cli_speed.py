"""The command line starts without its heavy modules; the help's names match the registries."""

import os
import subprocess
import sys

import pytest

from pcal_cli import catalogue

HEAVY = ("torch", "numpy", "scipy", "sklearn", "matplotlib", "plotly")
PROBE = """
import sys
from pcal_cli.cli import main
try:
    main({args!r})
except SystemExit as done:
    assert done.code in (0, None), done.code
print(",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["train", "--help"], ["round", "--help"],
                                  ["prepare", "--help"], ["compare", "--help"], ["report", "--help"],
                                  ["view", "--help"], ["label", "import", "--help"], ["check", "--help"]])
def test_help_and_version_import_no_heavy_module(args):
    done = subprocess.run([sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY)], capture_output=True,
                          text=True, timeout=120)
    loaded = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    assert loaded == "", f"pcal {' '.join(args)} imported {loaded}"


def test_the_catalogue_names_every_built_in_entry():
    from pcal_cli.acquisition import SCORERS
    from pcal_cli.data.datasets.registry import DATASETS
    from pcal_cli.selection import SELECTORS

    assert set(catalogue.SCORER_NAMES) == set(SCORERS)
    assert set(catalogue.SELECTOR_NAMES) == set(SELECTORS)
    assert set(catalogue.DATASET_NAMES) == set(DATASETS)


HELP_PROBE = """
import sys
import pcal_cli.cli as cli
if {through_group!r}:
    cli._command_help = lambda argv: None
try:
    cli.main({args!r})
except SystemExit as done:
    assert done.code in (0, None), done.code
print("pydantic" in sys.modules, file=sys.stderr)
"""


def _help(args, through_group):
    done = subprocess.run([sys.executable, "-c", HELP_PROBE.format(args=args, through_group=through_group)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "100"})
    return done.stdout, done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("command", ["train", "select", "label", "methods"])
def test_command_help_is_the_groups_help_without_the_root_options_coercion(command):
    fast, fast_pydantic = _help([command, "--help"], through_group=False)
    slow, slow_pydantic = _help([command, "--help"], through_group=True)
    assert fast == slow and f"Usage: pcal {command}" in fast
    assert (fast_pydantic, slow_pydantic) == ("False", "True")  # the 0.1 s the shortcut saves
    short, _ = _help([command, "-h"], through_group=False)
    assert short == fast
