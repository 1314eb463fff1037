"""Large scenes: voxelising without per-point features, and tiled inference with a margin."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pcal_cli.data.scene import Scene
from pcal_cli.data.synthetic import synthetic_room
from pcal_cli.models import build_model
from pcal_cli.project import Project
from pcal_cli.steps.score import ScoreSettings, score_round, score_scene, scores_dir
from pcal_cli.steps.seed import seed_round
from pcal_cli.training.data import point_features, voxelize
from pcal_cli.training.inference import Tiling, predict_scene, run_tiled, scene_voxels, voxel_tiles
from pcal_cli.training.supervised import TrainOptions, train

from conftest import project_copy, synthetic_project

CPU = torch.device("cpu")


def _room(points=6000, shift=(0.0, 0.0, 0.0), intensity=False) -> Scene:
    scene = synthetic_room(0, points, "room")
    scene.xyz = scene.xyz + np.asarray(shift, dtype=np.float32)
    if intensity:
        scene.intensity = np.random.default_rng(0).random(len(scene)).astype(np.float32) * 40
    return scene


@pytest.mark.parametrize("shift, channels", [((0, 0, 0), ["rgb"]), ((-7.3, 2.0, -1.1), ["rgb", "intensity"]),
                                             ((1000.0, 500.0, 3.0), [])])
def test_scene_voxels_are_what_voxelize_builds(shift, channels):
    scene = _room(shift=shift, intensity=True)
    expected = voxelize(scene.xyz, point_features(scene.xyz, scene, channels), np.full(len(scene), -1), 0.05, 13)
    got = scene_voxels(scene, channels, 0.05)
    np.testing.assert_array_equal(got.coords, expected.coords)
    np.testing.assert_array_equal(got.feats, expected.feats)
    np.testing.assert_array_equal(got.inverse, expected.inverse)
    assert got.coords.dtype == np.int32 and got.feats.dtype == np.float32 and (got.labels == -1).all()


def test_scene_voxels_of_an_empty_scene():
    got = scene_voxels(Scene(name="e", xyz=np.zeros((0, 3), np.float32)), [], 0.05)
    assert len(got.coords) == 0 and len(got.inverse) == 0


@pytest.mark.parametrize("max_voxels, margin", [(1, 0), (7, 2), (50, 0), (50, 3), (1000, 1), (10**6, 0)])
def test_tiles_partition_the_voxels_and_bound_their_size(max_voxels, margin):
    rng = np.random.default_rng(0)
    coords = np.unique(np.concatenate([rng.integers(0, 40, (600, 3)), rng.integers(0, 4, (300, 3))]), axis=0)
    tiles = voxel_tiles(coords, max_voxels, margin)
    cores = np.concatenate([core for core, _ in tiles])
    assert sorted(cores.tolist()) == list(range(len(coords)))  # every voxel in exactly one core
    for core, context in tiles:
        assert 0 < len(core) <= max_voxels
        assert np.isin(core, context).all() and (np.diff(context) > 0).all()
        lo, hi = coords[core].min(axis=0), coords[core].max(axis=0)
        outside = np.setdiff1d(np.arange(len(coords)), context)
        near = ((coords[outside] >= lo - margin) & (coords[outside] <= hi + margin)).all(axis=1)
        assert not near.any()  # whatever lies within the margin of the core's voxels is context
    if len(coords) <= max_voxels:
        assert len(tiles) == 1
    assert voxel_tiles(coords, max_voxels, margin)[0][0].tolist() == tiles[0][0].tolist()  # a fixed order


def test_tiled_inference_equals_one_pass_when_the_margin_covers_the_scene():
    scene = _room(8000)
    model = build_model("minkunet", 6, 13, cr=0.125, seed=0).eval()
    whole = predict_scene(model, scene, ["rgb"], 0.05, 13, CPU)
    voxels = len(whole.logits)
    tiny = Tiling(max_voxels=voxels // 7, margin=10**6)  # 8+ tiles, each with the whole scene as context
    assert len(voxel_tiles(scene_voxels(scene, ["rgb"], 0.05).coords, tiny.max_voxels, tiny.margin)) >= 8
    tiled = predict_scene(model, scene, ["rgb"], 0.05, 13, CPU, tiny)
    np.testing.assert_array_equal(tiled.inverse, whole.inverse)
    torch.testing.assert_close(tiled.logits, whole.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(tiled.features, whole.features, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(tiled.point_labels, whole.point_labels)


def test_tiles_with_a_small_margin_give_every_voxel_one_output():
    scene = _room(8000)
    model = build_model("minkunet", 6, 13, cr=0.125, seed=0).eval()
    whole = predict_scene(model, scene, ["rgb"], 0.05, 13, CPU)
    tiled = predict_scene(model, scene, ["rgb"], 0.05, 13, CPU, Tiling(max_voxels=len(whole.logits) // 4, margin=8))
    assert tiled.logits.shape == whole.logits.shape and torch.isfinite(tiled.logits).all()
    agree = (tiled.point_labels == whole.point_labels).mean()
    assert agree > 0.5  # a random network; inside the tiles the outputs are the same


def test_run_tiled_keeps_extra_leading_shapes():
    voxels = scene_voxels(_room(3000), [], 0.05)
    out, = run_tiled(voxels, CPU, lambda inputs: (np.repeat(inputs.F.numpy()[:, None, :], 2, axis=1),),
                     Tiling(max_voxels=100, margin=0))
    assert out.shape == (len(voxels.coords), 2, 3)
    np.testing.assert_array_equal(out[:, 0], voxels.feats)


# -- scoring a project tile by tile -----------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream") / "p"
    synthetic_project(root, 3, 4000)
    project = Project.open(root)
    seed_round(project, "random", "point", "2%", seed=0)
    train(project, 0, TrainOptions(cr=0.125, steps=2, batch_size=1, device="cpu"))
    return root


@pytest.mark.parametrize("scorer", ["margin", "entropy", "segment_entropy"])
def test_tiled_scores_equal_one_pass_scores(trained, tmp_path, scorer):
    project = project_copy(trained, tmp_path)
    settings = ScoreSettings(scorer=scorer, unit="region", features=True)
    score_round(project, 0, settings, device="cpu")
    whole = {p.name: dict(np.load(p)) for p in scores_dir(project, 0).glob("*.npz")}
    score_round(project, 0, settings, device="cpu", force=True, tiling=Tiling(max_voxels=300, margin=10**6))
    tiled = {p.name: dict(np.load(p)) for p in scores_dir(project, 0).glob("*.npz")}
    assert whole.keys() == tiled.keys() and whole
    for name in whole:
        assert whole[name].keys() == tiled[name].keys()
        for key in whole[name]:
            np.testing.assert_allclose(tiled[name][key], whole[name][key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_mc_dropout_scores_tile_by_tile(trained, tmp_path):
    project = project_copy(trained, tmp_path)
    from pcal_cli.acquisition import get_scorer
    from pcal_cli.training.checkpoint import load_checkpoint, model_from_checkpoint

    state = load_checkpoint(project.round_dir(0) / "model.pt")
    model = model_from_checkpoint(state, CPU)
    settings = ScoreSettings(scorer="mc_dropout", unit="region", passes=3)
    name = project.scenes("train")[0]
    args = (project, 0, name, 0, model, state["config"], get_scorer("mc_dropout"), settings, {}, CPU, None)
    whole = score_scene(*args)
    tiled = score_scene(*args, Tiling(max_voxels=200, margin=4))
    np.testing.assert_array_equal(tiled["units"], whole["units"])
    assert np.isfinite(tiled["scores"]).all() and tiled["scores"].shape == whole["scores"].shape
    again = score_scene(*args, Tiling(max_voxels=200, margin=4))
    np.testing.assert_array_equal(again["scores"], tiled["scores"])  # deterministic


def test_crop_keeps_the_nearest_points_to_a_labelled_point():
    from scipy.spatial import cKDTree

    from pcal_cli.training.data import crop

    rng = np.random.default_rng(0)
    xyz = (rng.random((20000, 3)) * [40, 30, 3]).astype(np.float32)
    labels = np.full(len(xyz), -1)
    labels[rng.choice(len(xyz), 30, replace=False)] = 1
    for seed in range(5):
        got = crop(xyz, 1500, labels, np.random.default_rng(seed))
        centre = xyz[int(np.random.default_rng(seed).choice(np.flatnonzero(labels >= 0)))]
        _, expected = cKDTree(xyz).query(centre, k=1500)
        np.testing.assert_array_equal(got, np.sort(expected))
        assert labels[got].max() == 1  # the centre is a labelled point
    np.testing.assert_array_equal(crop(xyz, len(xyz), labels, rng), np.arange(len(xyz)))
