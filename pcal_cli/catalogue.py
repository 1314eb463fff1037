"""The names the command line shows before it loads anything heavy: units, seed methods, region
kinds, and the built-in scorers, selectors and datasets.

``pcal --help`` and every ``pcal CMD --help`` read these instead of importing the registries
(which import numpy, scipy and torch), so they print at once. The constants of units, seeds and
regions live here and nowhere else; the registries' built-in names are checked against the
registries by a test (tests/test_cli_speed.py).
"""

UNITS = ("scene", "region", "cell", "point")
DEFAULT_CELL = 0.25
SEED_METHODS = ("random", "seedal", "oracle-balanced")
REGION_KINDS = ("supervoxel", "cells", "kmeans", "none")
SCORER_NAMES = ("random", "confidence", "margin", "entropy", "mc_dropout", "segment_entropy", "redal", "hmmu",
                "fms", "coreset")
SELECTOR_NAMES = ("topk", "kcenter", "diversity", "jopro", "fds")
DATASET_NAMES = ("synthetic", "s3dis", "scannet", "semantickitti", "sensaturban", "folder")
VIEW_MAX_POINTS = 200_000
DEFAULT_BUDGET = "1%"  # pcal compare's per-round budget, the same for every method
