"""Selections pinned across refactors: every built-in selector on fixed, seeded score files (no model),
through pcal select. The hashes were taken before the selector dispatch became SelectorSpec.choose
(commit ca2919c) and must not change."""
import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np

from pcal_cli.data.ply import read_ply
from pcal_cli.prepare import PrepareOptions, prepare_project
from pcal_cli.project import Project
from pcal_cli.steps.seed import seed_round
from pcal_cli.steps.select import select_round
from pcal_cli.units import unit_ids

CASES = [("topk", "region", "5%", {}), ("topk", "cell", "3/scene", {}), ("kcenter", "region", "5%", {}),
         ("diversity", "region", "5%", {"clusters": 4}), ("diversity", "region", "5%", {"overshoot": True}),
         ("fds", "point", "1%", {}), ("jopro", "point", "1%", {}), ("jopro", "point", "1%", {"budget_split": "global"})]


def fake_scores(project, unit, scorer, seed=0):
    """Score files as pcal score writes them, with seeded random scores and features."""
    folder = project.round_dir(0) / "scores"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"scorer": scorer, "unit": unit, "cell": 0.25, "aggregate": "mean",
                                                    "seed": 0, "passes": 10, "features": True, "keep": None,
                                                    "options": {}, "model_step": 0, "pcal_version": "pin"}))
    for index, name in enumerate(project.scenes("train")):
        rng = np.random.default_rng([seed, index])
        scene = read_ply(project.scene_path("train", name))
        ids = unit_ids(scene, unit, 0.25)
        units = np.unique(ids[ids >= 0])
        costs = np.bincount(ids[ids >= 0])[units]
        xyz = np.stack([np.bincount(ids[ids >= 0], weights=scene.xyz[ids >= 0, a])[units] / costs for a in range(3)], 1)
        np.savez(folder / f"{name}.npz", units=units.astype(np.int64), scores=rng.random(len(units)),
                 costs=costs.astype(np.int64), pool=np.int64(costs.sum()),
                 features=rng.normal(size=(len(units), 8)).astype(np.float32), xyz=xyz.astype(np.float32),
                 labelled_features=rng.normal(size=(3, 8)).astype(np.float32))
    rng = np.random.default_rng([seed, 99])
    np.savez(folder / "prototypes.npz", protos=rng.normal(size=(13, 8)), present=np.arange(13) % 3 > 0)


def select_pins(root: Path) -> dict[str, str]:
    warnings.simplefilter("ignore")
    base = root / "base"
    prepare_project("synthetic", None, base, {"scenes": 5, "points": 1500},
                    PrepareOptions(regions="supervoxel", region_params={"seed_resolution": 0.8, "min_size": 40}))
    pins = {}
    for selector, unit, budget, options in CASES:
        key = f"{selector}-{unit}-{budget}-{json.dumps(options, sort_keys=True)}"
        path = root / hashlib.sha256(key.encode()).hexdigest()[:8]

        shutil.copytree(base, path)
        project = Project.open(path)
        seed_round(project, "random", "region", "5%", seed=0)
        fake_scores(project, unit, "fms" if selector == "jopro" else "margin")
        record = select_round(project, 0, budget, selector=selector, seed=3, options=options)
        chosen = [(q["scene"], q["unit"], q["points"]) for q in record["queries"]]
        pins[key] = hashlib.sha256(json.dumps(chosen).encode()).hexdigest()[:16]
    return pins



PINNED = {
    "topk-region-5%-{}": "07a23378888dfa8c",
    "topk-cell-3/scene-{}": "49e8a07903236ca2",
    "kcenter-region-5%-{}": "f8a809552c60fa13",
    "diversity-region-5%-{\"clusters\": 4}": "3fea490c60e861c6",
    "diversity-region-5%-{\"overshoot\": true}": "8b4aac4c67b2bea6",
    "fds-point-1%-{}": "cbb9c684bc0f7a29",
    "jopro-point-1%-{}": "19c175dd4203bcc7",
    "jopro-point-1%-{\"budget_split\": \"global\"}": "cbb9c684bc0f7a29",
}


def test_selections_are_pinned(tmp_path):
    assert select_pins(tmp_path) == PINNED
