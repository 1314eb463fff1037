"""The command line starts without its heavy modules; the help's names match the registries."""

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
