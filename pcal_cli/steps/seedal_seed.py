"""``pcal seed --method seedal``: SeedAL's diverse initial set of whole scenes (``pcal_cli.seedal``).

Descriptors per training scene come from one of three sources (``features``):

- ``points`` (default): per-region descriptors of the point cloud itself (colour, shape
  eigenvalues, normals, height, size, density), never its labels;
- ``model:PATH``: a pcal checkpoint (for example the final model of another project with the same
  input channels); the mean decoder feature of each region;
- ``images:DIR``: ``DIR/<scene>.npy``, one ``[M, D]`` float array per scene of image descriptors
  computed elsewhere (for example DINO class tokens of the scene's photographs).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pcal_cli.data.ply import ply_vertex_count
from pcal_cli.errors import PcalError
from pcal_cli.project import Project
from pcal_cli.seedal import image_descriptors, model_descriptors, region_descriptors, seedal_select
from pcal_cli.selection.budget import parse_budget
from pcal_cli.steps.pool import pool_scene, training_points

OnScene = Callable[[int, int, str], None]


def scene_descriptors(project: Project, names: list[str], features: str, device: str = "auto",
                      on_scene: OnScene | None = None) -> tuple[list[np.ndarray], bool]:
    """One descriptor set per scene and whether they should be z-scored (point descriptors only)."""
    kind, _, where = features.partition(":")
    if kind not in ("points", "model", "images") or (kind != "points" and not where):
        raise PcalError(f"--features must be 'points', 'model:PATH' or 'images:DIR', got '{features}'")
    model = ckpt = torch_device = None
    if kind == "model":
        from pcal_cli.training.checkpoint import load_model
        from pcal_cli.training.supervised import resolve_device

        torch_device = resolve_device(device)
        model, state = load_model(Path(where), torch_device, channels=project.config.channels)
        ckpt = state["config"]
    descriptors = []
    for done, name in enumerate(names, start=1):
        if kind == "images":
            path = Path(where) / f"{name}.npy"
            if not path.is_file():
                raise PcalError(f"{path}: no image descriptors for training scene '{name}'")
            descriptors.append(image_descriptors(path))
        else:
            scene = pool_scene(project, name)
            if kind == "points":
                descriptors.append(region_descriptors(scene))
            else:
                descriptors.append(_model_descriptors(model, ckpt, scene, torch_device))
        if on_scene is not None:
            on_scene(done, len(names), name)
    return descriptors, kind == "points"


def _model_descriptors(model, ckpt: dict[str, Any], scene, device) -> np.ndarray:
    import torch

    from pcal_cli.training.inference import scene_inputs

    inputs, inverse = scene_inputs(scene, ckpt["channels"], ckpt["voxel_size"], ckpt["num_classes"], device)
    model.eval()
    with torch.no_grad():
        _, features = model(inputs)
    region = scene.region if (scene.region >= 0).any() else np.zeros(len(scene), dtype=np.int64)
    return model_descriptors(features.float().cpu().numpy()[inverse], region)


def seedal_seed_scenes(project: Project, budget_text: str, seed: int, *, features: str = "points",
                       solver: str = "milp", time_limit: float = 30.0, top_pairs: int | None = None,
                       device: str = "auto", on_scene: OnScene | None = None,
                       ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """SeedAL's scenes under the budget: ``({scene: [0]}, report)`` (the report names the scenes)."""
    budget = parse_budget(budget_text)
    if budget.kind == "per_scene":
        raise PcalError("SeedAL chooses whole scenes: give the budget as a percent or a number of points")
    names = project.scenes("train")
    points = np.array([ply_vertex_count(project.scene_path("train", n)) for n in names], dtype=np.int64)
    total = training_points(project)
    descriptors, normalise = scene_descriptors(project, names, features, device, on_scene)
    solution, report = seedal_select(descriptors, points, budget.points(total), project.config.num_classes,
                                     seed=seed, solver=solver, top_pairs=top_pairs, time_limit=time_limit,
                                     normalise=normalise)
    for entry in report["scenes"]:
        entry["scene"] = names[entry.pop("index")]
    report.update(features=features, budget_text=budget_text, seed=seed)
    return {names[i]: np.zeros(1, dtype=np.int64) for i in solution.scenes}, report
