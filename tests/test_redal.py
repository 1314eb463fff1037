"""ReDAL: point properties, the information score, the cluster decay and the preset end to end."""

import json
import os

import numpy as np
import pytest

from pcal_cli.acquisition import get_scorer
from pcal_cli.acquisition.aggregate import pool_features
from pcal_cli.acquisition.redal import information_scores, normalised_entropy
from pcal_cli.data.ply import read_ply
from pcal_cli.errors import PcalError
from pcal_cli.geometry.point_properties import point_properties
from pcal_cli.methods import get_method
from pcal_cli.options import parse_pairs, resolve_options
from pcal_cli.rounds import read_json, read_ledger
from pcal_cli.selection.diversity import cluster_decay, cluster_regions, diversity_select
from pcal_cli.steps.properties import properties_path, scene_properties
from pcal_cli.steps.round import run_rounds
from pcal_cli.steps.seed import seed_round
from pcal_cli.steps.select import select_round
from pcal_cli.training.supervised import TrainOptions

from conftest import project_copy, synthetic_project


def test_colour_discontinuity_on_a_colour_edge():
    # ten points on a line, dark for x < 5 and white from x = 5: with k = 3 a point's neighbours
    # are itself and the points either side (the end points: the next two)
    xyz = np.stack([np.arange(10.0), np.zeros(10), np.zeros(10)], axis=1)
    rgb = np.where(np.arange(10)[:, None] < 5, 0, 255).repeat(3, axis=1).astype(np.uint8)
    colour, _ = point_properties(xyz, rgb, k=3)
    # x = 4 sees 3 (same colour) and 5 (difference 1 on 3 channels): 3 / (3 channels * 2 neighbours)
    expected = np.array([0, 0, 0, 0, 0.5, 0.5, 0, 0, 0, 0])
    np.testing.assert_allclose(colour, expected, atol=1e-6)
    assert not point_properties(xyz, None, k=3)[0].any()


def test_surface_variation_plane_corner_and_scatter():
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 15), np.linspace(0, 1, 15)), -1).reshape(-1, 2)
    plane = np.c_[grid, np.zeros(len(grid))]
    _, flat = point_properties(plane, k=30)
    assert flat.max() < 1e-6
    # a corner: three orthogonal faces meeting at the origin
    faces = np.concatenate([np.c_[grid, np.zeros(len(grid))], np.c_[grid[:, 0], np.zeros(len(grid)), grid[:, 1]],
                            np.c_[np.zeros(len(grid)), grid]])
    _, corner = point_properties(faces, k=30)
    at_corner = corner[np.argmin(np.linalg.norm(faces - 0.01, axis=1))]
    assert at_corner > 0.1
    _, blob = point_properties(rng.normal(size=(2000, 3)), k=50)
    assert 0.2 < np.median(blob) <= 1 / 3 + 1e-6


def test_point_properties_stream_in_chunks_and_reject_bad_colours():
    rng = np.random.default_rng(1)
    xyz = rng.random((500, 3))
    rgb = rng.integers(0, 256, (500, 3)).astype(np.uint8)
    whole = point_properties(xyz, rgb, k=10)
    chunked = point_properties(xyz, rgb, k=10, chunk=37)
    for a, b in zip(whole, chunked):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(PcalError, match="colours"):
        point_properties(xyz, rgb[:10])


def test_information_score_weights():
    probs = np.array([[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    h = normalised_entropy(probs)
    np.testing.assert_allclose(h, [np.log(2) / np.log(3), 1.0, 0.0])
    colour, variation = np.array([0.0, 0.2, 0.4]), np.array([0.3, 0.0, 0.1])
    np.testing.assert_allclose(information_scores(probs, colour, variation, (1.0, 0.1, 0.05)),
                               h + 0.1 * colour + 0.05 * variation)
    np.testing.assert_allclose(information_scores(probs, colour, variation, (0.0, 0.0, 1.0)), variation)
    with pytest.raises(PcalError):
        information_scores(probs, colour[:2], variation)


def test_cluster_decay_walk_through():
    # five regions given out of order; clusters A = 0 and B = 1, decay 0.5:
    # A holds 0.9, 0.8, 0.6 -> 0.9, 0.8 * 0.5, 0.6 * 0.25; B holds 0.7, 0.5 -> 0.7, 0.5 * 0.5
    scores = np.array([0.6, 0.9, 0.5, 0.8, 0.7])
    clusters = np.array([0, 0, 1, 0, 1])
    decayed = cluster_decay(scores, clusters, 0.5)
    np.testing.assert_allclose(decayed, [0.15, 0.9, 0.25, 0.4, 0.7])
    # re-ranked: 0.9 (row 1), 0.7 (row 4), 0.4 (row 3), 0.25 (row 2), 0.15 (row 0)
    chosen = diversity_select(scores, np.ones(5, dtype=np.int64), np.eye(5)[[0, 0, 1, 0, 1]], 3,
                              clusters=2, decay=0.5)
    np.testing.assert_array_equal(chosen, [1, 4, 3])
    np.testing.assert_array_equal(cluster_decay(scores, clusters, 1.0), scores)
    with pytest.raises(PcalError):
        cluster_decay(scores, clusters, 0.0)


def test_diversity_select_spreads_over_clusters_and_respects_the_budget():
    rng = np.random.default_rng(2)
    features = np.concatenate([rng.normal(0, 0.01, (20, 4)), rng.normal(5, 0.01, (20, 4))])
    scores = np.r_[np.linspace(1.0, 0.9, 20), np.linspace(0.5, 0.4, 20)]  # cluster A scores higher
    costs = rng.integers(5, 15, 40)
    plain = diversity_select(scores, costs, features, 60, clusters=2, decay=1.0)
    diverse = diversity_select(scores, costs, features, 60, clusters=2, decay=0.5)
    assert (plain < 20).all() and (diverse >= 20).any()
    for chosen in (plain, diverse):
        assert costs[chosen].sum() <= 60
    np.testing.assert_array_equal(diverse, diversity_select(scores, costs, features, 60, clusters=2, decay=0.5))
    trimmed = diversity_select(scores, costs, features, 10**6, clusters=2, trim=0.25)
    assert set(trimmed) == set(range(10))  # the best quarter only
    assert (cluster_regions(features, 2, seed=0)[:20] != cluster_regions(features, 2, seed=0)[20:]).all()


def test_pool_features_per_voxel_matches_per_point():
    rng = np.random.default_rng(3)
    voxel = rng.random((30, 5)).astype(np.float32)
    inverse = rng.integers(0, 30, 200)
    ids = rng.integers(-1, 6, 200)
    available = rng.random(200) < 0.7
    np.testing.assert_allclose(pool_features(voxel, ids, available, rows=inverse),
                               pool_features(voxel[inverse], ids, available), rtol=1e-5)


def test_options_are_typed_and_unknown_names_refused():
    spec = get_scorer("redal")
    assert spec.default_options(indoor=False)["weights"] == (1.0, 0.0, 0.05)
    resolved = resolve_options(spec.options, parse_pairs(["weights=1,0.2,0", "k=20"]), "scorer 'redal'")
    assert resolved == {"weights": (1.0, 0.2, 0.0), "k": 20}
    with pytest.raises(PcalError, match="did you mean 'weights'"):
        resolve_options(spec.options, {"weight": "1"}, "scorer 'redal'")
    with pytest.raises(PcalError, match="cannot read"):
        resolve_options(spec.options, {"k": "many"}, "scorer 'redal'")
    with pytest.raises(PcalError, match="KEY=VALUE"):
        parse_pairs(["decay"])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("redal") / "p"
    synthetic_project(root, 6, 1500)
    return root


@pytest.fixture
def project(base, tmp_path):
    return project_copy(base, tmp_path)


def test_scene_properties_are_cached_and_refreshed(project):
    scene = read_ply(project.scene_path("train", project.scenes("train")[0]))
    first = scene_properties(project, scene, k=8)
    path = properties_path(project, scene.name, 8)
    stamp = path.stat().st_mtime_ns
    second = scene_properties(project, scene, k=8)
    assert path.stat().st_mtime_ns == stamp  # read back, not recomputed
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    path.write_bytes(b"garbage")
    np.testing.assert_array_equal(scene_properties(project, scene, k=8)[1], first[1])
    os.utime(project.scene_path("train", scene.name), ns=(1, 1))  # the scene changed: recompute
    scene_properties(project, scene, k=8)
    assert path.stat().st_mtime_ns != stamp


def test_redal_preset_runs_a_round_with_diversity(project):
    assert get_method("redal").seed_unit == "scene" and get_method("redal").round_budget(False) == "1%"
    seed_round(project, "random", "scene", "30%", seed=0)
    tiny = TrainOptions(cr=0.125, steps=3, batch_size=2, device="cpu")
    run_rounds(project, "redal", rounds=1, options=tiny, final=False, selector_options={"clusters": 5})
    queries = read_json(project.round_dir(0) / "queries.json", "queries")
    config = read_json(project.round_dir(0) / "round.json", "round")
    assert queries["selector"] == "diversity" and queries["selector_options"]["clusters"] == 5
    assert config["scorer_options"] == {"k": 50, "weights": [1.0, 0.1, 0.05]}
    assert 0 < queries["spent_points"] <= queries["budget_points"] == round(0.02 * project.point_count("train"))
    first = (project.round_dir(0) / "queries.json").read_bytes()
    again = select_round(project, 0, "2%", selector="diversity", seed=0, method="redal",
                         train_options=config["train"], options={"clusters": 5}, force=True)
    assert json.dumps(again, sort_keys=True) == json.dumps(json.loads(first), sort_keys=True)
    with pytest.raises(PcalError, match="no option"):
        select_round(project, 0, "2%", selector="diversity", options={"clusterz": 5}, force=True)


def test_diversity_needs_features(project):
    seed_round(project, "random", "scene", "30%", seed=0)
    tiny = TrainOptions(cr=0.125, steps=2, batch_size=2, device="cpu")
    run_rounds(project, "redal_ent", rounds=1, options=tiny, final=False, label=False)
    with pytest.raises(PcalError, match="--features"):
        select_round(project, 0, "2%", selector="diversity", force=True)


def test_redal_overshoot_is_an_option_recorded_in_queries_labelling_and_ledger(project):
    seed_round(project, "random", "scene", "30%", seed=0)
    tiny = TrainOptions(cr=0.125, steps=2, batch_size=2, device="cpu")
    with pytest.warns(UserWarning, match="median size"):  # 2 % of these tiny rooms buys few regions
        run_rounds(project, "redal", rounds=1, options=tiny, final=False,
                   selector_options={"clusters": 5, "overshoot": True})
    queries = read_json(project.round_dir(0) / "queries.json", "queries")
    assert queries["spent_points"] >= queries["budget_points"]
    assert queries["overshoot_points"] == queries["spent_points"] - queries["budget_points"]
    labelling = read_json(project.round_dir(1) / "labelling.json", "labelling")
    assert labelling["overshoot_points"] == queries["overshoot_points"]
    entries = [e for e in read_ledger(project) if e["round"] == 1]
    if queries["overshoot_points"]:
        assert {e["round_overshoot_points"] for e in entries} == {queries["overshoot_points"]}
    assert sum(e["points"] for e in entries) == labelling["points_added"]
