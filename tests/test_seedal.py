"""SeedAL: descriptors, diversity weights, the MILP / greedy selection and the whole pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pcal_cli.data.scene import Scene
from pcal_cli.errors import PcalError
from pcal_cli.geometry.neighbours import estimate_normals
from pcal_cli.seedal import (
    DESCRIPTOR_NAMES,
    greedy_local_search,
    image_descriptors,
    model_descriptors,
    normalise_descriptors,
    pair_weights,
    region_descriptors,
    scene_centroids,
    seedal_select,
    select_seed_scenes,
    selection_objective,
    self_similarity,
    zscore_descriptors,
)

E = np.eye(5)


def weight_of(pairs: np.ndarray, weights: np.ndarray, i: int, j: int) -> float:
    hit = np.flatnonzero((pairs[:, 0] == i) & (pairs[:, 1] == j))
    assert len(hit) == 1
    return float(weights[hit[0]])


def room(rng: np.random.Generator, n: int = 3000, regions: int = 12, seed_label: int = 0) -> Scene:
    """A small synthetic room: a floor, a wall and a box, coloured, with random region ids."""
    floor = np.c_[rng.uniform(0, 4, n // 3), rng.uniform(0, 3, n // 3), rng.normal(0, 0.005, n // 3)]
    wall = np.c_[rng.uniform(0, 4, n // 3), rng.normal(0, 0.005, n // 3), rng.uniform(0, 2.5, n // 3)]
    rest = n - 2 * (n // 3)
    box = rng.uniform([1, 1, 0], [1.5, 1.6, 0.8], size=(rest, 3))
    xyz = np.concatenate([floor, wall, box]).astype(np.float32)
    rgb = rng.integers(0, 256, size=(n, 3))
    region = np.floor(xyz[:, 0] * regions / 4.0001).astype(np.int32) * 2  # ids 0, 2, 4, ... (gaps)
    label = np.random.default_rng(seed_label).integers(0, 13, n)
    return Scene("room", xyz, label=label, rgb=rgb, region=region)


# --------------------------------------------------------------------------------------------
# pair weights on hand-made centroids


def test_identical_scenes_without_diversity_weigh_zero():
    same = np.tile(E[0], (3, 1))  # three identical centroids: mu_s = 1
    pairs, weights = pair_weights([same, same.copy(), E[[1, 2]]])
    assert weight_of(pairs, weights, 0, 1) == 0.0
    assert weight_of(pairs, weights, 0, 2) == 0.0  # no diversity inside scene 0: nothing pairs with it
    assert self_similarity(same) == pytest.approx(1.0)
    assert self_similarity(E[[0]]) == 1.0  # one centroid: defined as no diversity


def test_identical_diverse_scenes_keep_the_papers_value():
    # mu_st averages the full cross block, diagonal included: two copies of K orthogonal
    # centroids have mu_st = 1/K, so the paper's weight is 1 - 1/K, not 0
    pairs, weights = pair_weights([E[:4], E[:4].copy()])
    assert weight_of(pairs, weights, 0, 1) == pytest.approx(1 - 1 / 4)


def test_orthogonal_and_overlapping_scenes_hand_computed():
    tilted = np.array([E[0], (E[0] + E[1]) / math.sqrt(2)])  # mu = 1/sqrt(2)
    sets = [E[[0, 1]], E[[2, 3]], E[[1, 2]], tilted]
    pairs, weights = pair_weights(sets)
    assert weight_of(pairs, weights, 0, 1) == pytest.approx(1.0)  # all orthogonal
    assert weight_of(pairs, weights, 0, 2) == pytest.approx(0.75)  # one shared direction of 4 cross pairs
    assert weight_of(pairs, weights, 1, 3) == pytest.approx(1 - 1 / math.sqrt(2))
    # scene 3 vs scene 0: cross cosines 1, 0, 1/sqrt2, 1/sqrt2 -> mu_st = (1 + sqrt2) / 4
    expected = (1 - 1 / math.sqrt(2)) * (1 - (1 + math.sqrt(2)) / 4)
    assert weight_of(pairs, weights, 0, 3) == pytest.approx(expected)
    assert pairs.tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    assert self_similarity(tilted) == pytest.approx(1 / math.sqrt(2))


def test_unequal_centroid_counts_use_the_full_cross_block():
    s, t = E[[0, 1, 2]], E[[0, 3]]
    pairs, weights = pair_weights([s, t])
    # 3 x 2 block: only e0.e0 = 1, so mu_st = 1/6 and w = 5/6. The release's block (rows of t,
    # first |t| columns of the stacked Gram matrix) would give mu = 1/4 and w = 3/4.
    assert weight_of(pairs, weights, 0, 1) == pytest.approx(5 / 6)
    pairs, weights = pair_weights([t, s])  # symmetric in the order of the scenes
    assert weight_of(pairs, weights, 0, 1) == pytest.approx(5 / 6)


def test_pair_weights_top_and_budget_filter():
    rng = np.random.default_rng(3)
    sets = [_unit(rng.normal(size=(int(rng.integers(2, 6)), 8))) for _ in range(30)]
    pairs, weights = pair_weights(sets)
    assert len(pairs) == 30 * 29 // 2 and (weights >= 0).all()
    points = rng.integers(10, 100, 30)
    top, top_w = pair_weights(sets, top=25, points=points, budget=120)
    fits = points[pairs[:, 0]] + points[pairs[:, 1]] <= 120
    order = np.lexsort((pairs[fits, 1], pairs[fits, 0], -weights[fits]))[:25]
    assert top.tolist() == pairs[fits][order].tolist()
    np.testing.assert_allclose(top_w, weights[fits][order], rtol=1e-12)
    # the mu_s inside pair_weights (from centroid sums) agrees with self_similarity (Gram matrix)
    one_pair = pair_weights([sets[0], sets[1]])[1][0]
    mu_st = float((sets[0] @ sets[1].T).mean())
    expected = (1 - self_similarity(sets[0])) * (1 - self_similarity(sets[1])) * (1 - mu_st)
    assert one_pair == pytest.approx(expected, rel=1e-12)


def test_pair_weights_refuse_bad_input():
    with pytest.raises(PcalError):
        pair_weights([])
    with pytest.raises(PcalError):
        pair_weights([E[:2], np.eye(3)[:2]])  # dimensions differ
    with pytest.raises(PcalError):
        pair_weights([E[:2], np.full((2, 5), np.nan)])


# --------------------------------------------------------------------------------------------
# selection


def brute_force(points: np.ndarray, pairs: np.ndarray, weights: np.ndarray, budget: int) -> float:
    s = len(points)
    best = 0.0
    for mask in range(1 << s):
        chosen = [i for i in range(s) if mask >> i & 1]
        if points[chosen].sum() <= budget:
            best = max(best, selection_objective(chosen, pairs, weights, s))
    return best


def random_instance(rng: np.random.Generator, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    points = rng.integers(10, 200, s)
    pairs = np.array([(i, j) for i in range(s) for j in range(i + 1, s)], dtype=np.int64)
    weights = rng.random(len(pairs)) * (rng.random(len(pairs)) < 0.6)
    budget = int(points.sum() * rng.uniform(0.2, 0.5))
    budget = max(budget, int(points.min()))
    return points, pairs, weights, budget


def test_milp_equals_brute_force_on_tiny_instances():
    rng = np.random.default_rng(11)
    for _ in range(12):
        points, pairs, weights, budget = random_instance(rng, int(rng.integers(6, 9)))
        solution = select_seed_scenes(points, pairs, weights, budget, top_pairs=100)
        assert solution.status == "optimal" and solution.solver == "milp"
        assert solution.objective == pytest.approx(brute_force(points, pairs, weights, budget), rel=1e-9)
        assert points[solution.scenes].sum() <= budget
        assert solution.gap is not None and solution.gap <= 1e-4


def test_milp_beats_or_ties_greedy_and_both_respect_the_budget():
    rng = np.random.default_rng(5)
    for _ in range(25):
        points, pairs, weights, budget = random_instance(rng, int(rng.integers(10, 16)))
        milp = select_seed_scenes(points, pairs, weights, budget, top_pairs=60)
        greedy = select_seed_scenes(points, pairs, weights, budget, top_pairs=60, solver="greedy")
        assert greedy.status == "greedy" and greedy.gap is None
        kept_p, kept_w = _kept(points, pairs, weights, budget, 60)
        for solution in (milp, greedy):
            assert int(points[solution.scenes].sum()) == solution.points_used <= budget
            assert np.all(np.diff(solution.scenes) > 0) and solution.candidate_pairs == len(kept_w)
            assert solution.objective == pytest.approx(
                selection_objective(solution.scenes, kept_p, kept_w, len(points)), abs=1e-12)
        assert milp.objective >= greedy.objective * (1 - 1e-4) - 1e-12


def test_greedy_local_search_alone_respects_the_budget():
    rng = np.random.default_rng(8)
    for _ in range(20):
        points, pairs, weights, budget = random_instance(rng, 12)
        chosen = greedy_local_search(points, pairs, weights, budget)
        assert chosen.dtype == bool and int(points[chosen].sum()) <= budget
    # gain per point alone goes wrong here: the small scenes fill up first (0.3), and the heavy
    # pair of big ones (2.0, worth less per point) no longer fits; ranking by plain gain finds it
    points = np.array([50, 50, 1, 1, 1])
    pairs = np.array([[0, 1], [2, 3], [2, 4], [3, 4]])
    weights = np.array([2.0, 0.1, 0.1, 0.1])
    chosen = greedy_local_search(points, pairs, weights, 100)
    assert np.flatnonzero(chosen).tolist() == [0, 1]
    # construction ends at {2, 3, 4} (7); one swap, 2 out and 1 in, reaches the optimum {1, 3, 4} (8)
    points = np.array([5, 4, 3, 2, 2])
    pairs = np.array([(i, j) for i in range(5) for j in range(i + 1, 5)])
    weights = np.array([0, 0, 0, 0, 3, 2, 3, 2, 2, 3], dtype=float)
    chosen = greedy_local_search(points, pairs, weights, 8)
    assert np.flatnonzero(chosen).tolist() == [1, 3, 4]
    assert brute_force(points, pairs, weights, 8) == 8.0


def test_selection_edge_cases():
    points = np.array([5, 6, 7])
    pairs = np.array([[0, 1], [0, 2], [1, 2]])
    weights = np.array([0.5, 0.2, 0.1])
    every = select_seed_scenes(points, pairs, weights, 18)
    assert every.status == "all_fit" and every.scenes.tolist() == [0, 1, 2]
    assert every.objective == pytest.approx(0.8)
    with pytest.raises(PcalError, match="no scene fits"):
        select_seed_scenes(points, pairs, weights, 4)
    single = select_seed_scenes(points, pairs, weights, 6)  # no pair fits: fill with one scene
    assert single.status == "no_pairs" and single.scenes.tolist() == [0] and single.objective == 0.0
    best = select_seed_scenes(points, pairs, weights, 12)
    assert best.scenes.tolist() == [0, 1] and best.objective == pytest.approx(0.5)
    with pytest.raises(PcalError):
        select_seed_scenes(points, pairs, -weights, 12)
    with pytest.raises(PcalError):
        select_seed_scenes(points, pairs[:, ::-1], weights, 12)
    with pytest.raises(PcalError):
        select_seed_scenes(points, pairs, weights, 12, solver="scip")


def test_fill_uses_leftover_budget_with_the_heaviest_gain():
    points = np.array([10, 10, 10, 3, 3])
    pairs = np.array([[0, 1], [0, 3], [1, 4]])
    weights = np.array([1.0, 0.3, 0.2])
    solution = select_seed_scenes(points, pairs, weights, 23, top_pairs=1)  # only (0, 1) is a candidate
    # the MILP picks {0, 1}; 3 points are left, where scenes 3 and 4 fit: neither is in a kept
    # pair (gain 0 on both), so the lower index wins
    assert solution.scenes.tolist() == [0, 1, 3]
    assert solution.objective == pytest.approx(1.0) and solution.candidate_pairs == 1


# --------------------------------------------------------------------------------------------
# descriptors


def test_region_descriptors_shape_finite_and_label_free():
    rng = np.random.default_rng(0)
    scene = room(rng)
    desc = region_descriptors(scene)
    assert desc.dtype == np.float32 and desc.shape == (12, len(DESCRIPTOR_NAMES))
    assert np.isfinite(desc).all()
    relabelled = Scene("room", scene.xyz, label=np.random.default_rng(99).integers(0, 13, len(scene)),
                       rgb=scene.rgb, region=scene.region)
    np.testing.assert_array_equal(region_descriptors(relabelled), desc)
    np.testing.assert_array_equal(region_descriptors(scene, normals=estimate_normals(scene.xyz, k=16)), desc)
    with pytest.raises(PcalError):
        region_descriptors(scene, normals=np.zeros((3, 3)))
    # the columns mean what they say: fractions of the normal histogram sum to 1; mean colour
    hist = desc[:, DESCRIPTOR_NAMES.index("normal_z_0"):DESCRIPTOR_NAMES.index("normal_z_5") + 1]
    np.testing.assert_allclose(hist.sum(axis=1), 1.0, rtol=1e-6)
    first = scene.region == 0
    np.testing.assert_allclose(desc[0, :3], scene.rgb[first].mean(axis=0) / 255.0, rtol=1e-5)
    np.testing.assert_allclose(desc[0, DESCRIPTOR_NAMES.index("log_points")], np.log1p(first.sum()), rtol=1e-6)
    # a flat floor patch is planar; its normals are vertical (last |n_z| bin)
    floor = Scene("floor", np.c_[rng.uniform(0, 2, (500, 2)), np.zeros(500)].astype(np.float32),
                  region=np.zeros(500, dtype=np.int32))
    row = region_descriptors(floor)[0]
    assert row[DESCRIPTOR_NAMES.index("scattering")] < 1e-6
    assert row[DESCRIPTOR_NAMES.index("planarity")] > row[DESCRIPTOR_NAMES.index("linearity")]
    assert row[DESCRIPTOR_NAMES.index("normal_z_5")] == pytest.approx(1.0)
    assert np.all(row[:4] == 0)  # no colour: zeros


def test_region_descriptors_without_regions_use_metre_cells():
    rng = np.random.default_rng(1)
    xyz = rng.uniform(0, [3, 2, 1], size=(2000, 3)).astype(np.float32)
    desc = region_descriptors(Scene("plain", xyz))
    cells = len(np.unique(np.floor((xyz - xyz.min(axis=0)) / 1.0).astype(int), axis=0))
    assert desc.shape == (cells, len(DESCRIPTOR_NAMES)) and np.isfinite(desc).all()
    partial = Scene("partial", xyz, region=np.where(xyz[:, 0] < 1.5, 7, -1))  # -1 points are left out
    assert region_descriptors(partial).shape == (1, len(DESCRIPTOR_NAMES))
    with pytest.raises(PcalError):
        region_descriptors(Scene("empty", np.zeros((0, 3))))


def test_normalisation_zero_mean_columns_then_unit_rows():
    rng = np.random.default_rng(2)
    sets = [np.c_[rng.normal(5, 3, (n, 3)), np.full((n, 1), 7.0)] for n in (4, 9, 1)]
    z = zscore_descriptors(sets)
    stacked = np.concatenate(z)
    np.testing.assert_allclose(stacked[:, :3].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(stacked[:, :3].std(axis=0), 1, rtol=1e-12)
    assert np.all(stacked[:, 3] == 0)  # constant column -> 0
    unit = normalise_descriptors(sets)
    assert [len(u) for u in unit] == [4, 9, 1] and unit[0].dtype == np.float32
    for u, zz in zip(unit, z, strict=True):
        np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1, rtol=1e-6)
        np.testing.assert_allclose(u, zz / np.linalg.norm(zz, axis=1, keepdims=True), rtol=1e-6)
    with pytest.raises(PcalError):
        normalise_descriptors([np.ones((2, 3)), np.ones((2, 4))])


def test_model_descriptors_mean_pool_per_region():
    features = np.arange(12, dtype=np.float32).reshape(6, 2)
    region = np.array([3, 3, -1, 0, 0, 0])
    pooled = model_descriptors(features, region)
    np.testing.assert_allclose(pooled, [[8, 9], [1, 2]])  # rows by ascending region id: 0, then 3
    sparse_ids = np.where(region >= 0, region * 10**9, -1)  # huge, sparse ids: same rows
    np.testing.assert_allclose(model_descriptors(features, sparse_ids), pooled)
    with pytest.raises(PcalError):
        model_descriptors(features, np.full(6, -1))
    with pytest.raises(PcalError):
        model_descriptors(features[:, 0], region)


def test_image_descriptors_read_good_and_refuse_bad_files(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.ones((3, 8), dtype=np.float64))
    loaded = image_descriptors(good)
    assert loaded.shape == (3, 8) and loaded.dtype == np.float32
    bad = {
        "flat.npy": np.ones(8),
        "empty.npy": np.ones((0, 8)),
        "nan.npy": np.array([[1.0, np.nan]]),
        "text.npy": np.array([["a", "b"]]),
    }
    for name, array in bad.items():
        np.save(tmp_path / name, array)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "archive.npz", a=np.ones((2, 2)))
    (tmp_path / "garbage.npy").write_bytes(b"not an array")
    for name in [*bad, "objects.npy", "archive.npz", "garbage.npy", "missing.npy"]:
        with pytest.raises(PcalError):
            image_descriptors(tmp_path / name)


# --------------------------------------------------------------------------------------------
# the pipeline


def test_scene_centroids_cap_and_unit_rows():
    rng = np.random.default_rng(4)
    desc = rng.normal(size=(40, 6))
    centres = scene_centroids(desc, 13, seed=0)
    assert centres.shape == (13, 6)
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 1, rtol=1e-12)
    np.testing.assert_array_equal(centres, scene_centroids(desc, 13, seed=0))
    assert scene_centroids(np.repeat(desc[:3], 5, axis=0), 13, seed=0).shape == (3, 6)


def test_seedal_prefers_diverse_scenes_and_is_deterministic():
    rng = np.random.default_rng(6)
    diverse = [rng.normal(size=(30, 6)) for _ in range(3)]
    boring = [np.tile(rng.normal(size=(1, 6)), (30, 1)) for _ in range(3)]  # one centroid: mu_s = 1
    sets = [boring[0], diverse[0], boring[1], diverse[1], boring[2], diverse[2]]
    points = np.full(6, 1000)
    solution, report = seedal_select(sets, points, 3000, num_classes=4)
    assert solution.scenes.tolist() == [1, 3, 5]
    assert report["num_scenes"] == 3 and report["points_used"] == 3000 and report["status"] == "optimal"
    assert report["candidate_pairs"] == 3 and report["solver"] == "milp"
    assert all(s["mu_s"] < 1 for s in report["scenes"]) and report["objective"] == solution.objective
    again, report_again = seedal_select(sets, points, 3000, num_classes=4)
    assert again.scenes.tolist() == solution.scenes.tolist() and again.objective == solution.objective
    report.pop("seconds"), report_again.pop("seconds")
    assert report == report_again


def test_seedal_end_to_end_on_rooms():
    scenes = [room(np.random.default_rng(i), n=1500, regions=int(6 + i)) for i in range(6)]
    first = [region_descriptors(s) for s in scenes]
    second = [region_descriptors(s) for s in scenes]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    points = np.array([len(s) for s in scenes])
    budget = int(points.sum() * 0.5)
    for solver in ("milp", "greedy"):
        solution, report = seedal_select(first, points, budget, num_classes=5, solver=solver)
        assert 1 <= len(solution.scenes) and points[solution.scenes].sum() <= budget
        assert report["solver"] == solver and report["objective"] > 0
    with pytest.raises(PcalError):
        seedal_select(first, points[:3], budget, num_classes=5)
    with pytest.raises(PcalError):
        seedal_select(first, points, 10, num_classes=5)


def _kept(points, pairs, weights, budget, top):
    keep = (weights > 0) & (points[pairs[:, 0]] + points[pairs[:, 1]] <= budget)
    idx = np.flatnonzero(keep)
    idx = idx[np.lexsort((pairs[idx, 1], pairs[idx, 0], -weights[idx]))][:top]
    return pairs[idx], weights[idx]


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)
