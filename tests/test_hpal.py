"""HPAL building blocks: HMMU scores, feature-distance suppression, EMA teacher, strong view, loss."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pcal_cli.selection.fds as fds_module
import pcal_cli.training.views as views_module
from pcal_cli.acquisition.hmmu import hmmu_levels, hmmu_parts, hmmu_scores, top2_margin
from pcal_cli.errors import PcalError
from pcal_cli.selection.fds import fds_select
from pcal_cli.training.ema import ema_update, make_teacher
from pcal_cli.training.teacher_student import teacher_student_loss
from pcal_cli.training.views import elastic_distortion, rotate_tilt_scale, strong_colours, strong_view

# ---------------------------------------------------------------- HMMU


def _line(xs: list[float]) -> np.ndarray:
    """Points on the x axis (y = z = 0), float64."""
    return np.column_stack([np.array(xs), np.zeros(len(xs)), np.zeros(len(xs))])


# Seven points on the x axis. Level 1 (0.10 m cells from x = 0): cells 0 {0.00, 0.02} centroid 0.01,
# 1 {0.18} centroid 0.18, 2 {0.21, 0.29} centroid 0.25, 9 {0.90, 0.95} centroid 0.925. The point at
# 0.21 is 0.03 from 0.18 but 0.04 from its own centroid 0.25: it joins the group of cell 1.
SCENE_X = [0.00, 0.02, 0.18, 0.21, 0.29, 0.90, 0.95]
SCENE_P = np.array([
    [0.6, 0.3, 0.1],    # m = 0.3
    [0.2, 0.7, 0.1],    # m = 0.5
    [0.5, 0.4, 0.1],    # m = 0.1
    [0.1, 0.1, 0.8],    # m = 0.7
    [0.3, 0.3, 0.4],    # m = 0.1
    [0.9, 0.05, 0.05],  # m = 0.85
    [0.1, 0.8, 0.1],    # m = 0.7
])


def test_hmmu_levels_by_hand() -> None:
    level1, level2, level3 = hmmu_levels(_line(SCENE_X))
    assert level1.tolist() == [0, 0, 1, 1, 2, 3, 3]  # 0.21 moved to the group of 0.18
    # level 2: 0.50 m cells over the centroids 0.01, 0.18, 0.25, 0.925 (anchored at 0.01):
    # {0.01, 0.18, 0.25} -> centroid 0.14667, {0.925} -> 0.925; nobody moves
    assert level2.tolist() == [0, 0, 0, 0, 0, 1, 1]
    # level 3: 1.0 m cells over 0.14667 and 0.925 (anchored at 0.14667): one cell
    assert level3.tolist() == [0] * 7
    plain = hmmu_levels(_line(SCENE_X), nearest=False)
    assert plain[0].tolist() == [0, 0, 1, 2, 2, 3, 3]  # plain cell membership


def test_hmmu_level2_nearest_centroid_differs_from_cell() -> None:
    # 0.10 m cells hold one point each, so the level-1 centroids are the points themselves.
    # Level 2, 0.50 m cells from 0: cell 0 {0.00, 0.45} centroid 0.225, cell 1 {0.56, 0.64, 0.72}
    # centroid 0.64. The child at 0.45 is 0.225 from its own centroid but 0.19 from 0.64: it moves.
    xyz = _line([0.00, 0.45, 0.56, 0.64, 0.72])
    levels = hmmu_levels(xyz)
    assert levels[0].tolist() == [0, 1, 2, 3, 4]
    assert levels[1].tolist() == [0, 1, 1, 1, 1]
    assert levels[2].tolist() == [0, 0, 0, 0, 0]
    assert hmmu_levels(xyz, nearest=False)[1].tolist() == [0, 0, 1, 1, 1]
    # levels are configurable: two levels give two arrays
    assert len(hmmu_levels(xyz, (0.1, 0.5))) == 2


def test_hmmu_scores_by_hand() -> None:
    xyz = _line(SCENE_X)
    m = np.array([0.3, 0.5, 0.1, 0.7, 0.1, 0.85, 0.7])
    # level 1 groups {p0,p1} mean (0.4, 0.5, 0.1) -> 0.1; {p2,p3} (0.3, 0.25, 0.45) -> 0.15;
    # {p4} (0.3, 0.3, 0.4) -> 0.1; {p5,p6} (0.5, 0.425, 0.075) -> 0.075
    m1 = np.array([0.1, 0.1, 0.15, 0.15, 0.1, 0.075, 0.075])
    # level 2 {p0..p4}: point-weighted mean (1.7, 1.8, 1.5) / 5 = (0.34, 0.36, 0.30) -> 0.02
    # (the released code's mean of the three child means would give 0.05 / 3); {p5,p6} -> 0.075
    m2 = np.array([0.02] * 5 + [0.075] * 2)
    # level 3, all seven points: (2.7, 2.65, 1.65) / 7 -> 0.05 / 7
    m3 = np.full(7, 0.05 / 7)
    parts = hmmu_parts(xyz, SCENE_P)
    for got, want in zip(parts, (m, m1, m2, m3), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-12)
    scores = hmmu_scores(xyz, SCENE_P)
    assert scores.dtype == np.float64 and scores.shape == (7,)
    np.testing.assert_allclose(scores, m + 0.1 * m1 + 0.01 * m2 + 0.001 * m3, atol=1e-12)
    assert int(np.argmin(scores)) == 4  # 0.1 + 0.01 beats 0.1 + 0.015: context breaks the tie
    custom = hmmu_scores(xyz, SCENE_P, weights=(0.0, 1.0, 0.0, 2.0))
    np.testing.assert_allclose(custom, m1 + 2 * m3, atol=1e-12)
    # plain cells: {p2} alone -> 0.1, {p3, p4} (0.2, 0.2, 0.6) -> 0.4
    plain = hmmu_parts(xyz, SCENE_P, nearest=False)[1]
    np.testing.assert_allclose(plain, [0.1, 0.1, 0.1, 0.4, 0.4, 0.075, 0.075], atol=1e-12)


def test_hmmu_random_scene_invariants() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    xyz = rng.random((n, 3)) * [4.0, 3.0, 2.0]
    probs = rng.dirichlet(np.ones(5), n)
    levels = hmmu_levels(xyz)
    for fine, coarse in pairwise(levels):
        # ids are 0..G-1, all used, and every fine group lies in exactly one coarse group
        assert np.array_equal(np.unique(fine), np.arange(fine.max() + 1))
        pairs = np.unique(np.column_stack([fine, coarse]), axis=0)
        assert len(pairs) == fine.max() + 1
    assert len(np.unique(levels[0])) > len(np.unique(levels[1])) > len(np.unique(levels[2])) > 1
    scores = hmmu_scores(xyz, probs)
    assert np.all(scores >= 0) and np.all(scores <= 1.111 + 1e-12)
    np.testing.assert_allclose(hmmu_scores(xyz, probs, weights=(1, 0, 0, 0)), top2_margin(probs))
    perm = rng.permutation(n)
    np.testing.assert_allclose(hmmu_scores(xyz[perm], probs[perm]), scores[perm], atol=1e-12)
    assert np.array_equal(hmmu_levels(xyz[perm])[2], levels[2][perm])
    # float32 input works the same
    np.testing.assert_allclose(hmmu_scores(xyz.astype(np.float32), probs.astype(np.float32)), scores, atol=1e-5)


def test_hmmu_rejects_bad_input() -> None:
    xyz, probs = _line(SCENE_X), SCENE_P
    with pytest.raises(PcalError, match="points"):
        hmmu_scores(xyz[:5], probs)
    with pytest.raises(PcalError, match="increasing"):
        hmmu_scores(xyz, probs, levels=(0.5, 0.1, 1.0))
    with pytest.raises(PcalError, match="positive"):
        hmmu_levels(xyz, (-0.1, 0.5))
    with pytest.raises(PcalError, match="weights"):
        hmmu_scores(xyz, probs, weights=(1.0, 0.1))
    with pytest.raises(PcalError):
        hmmu_scores(np.zeros((7, 2)), probs)
    assert hmmu_scores(np.zeros((0, 3)), np.zeros((0, 3))).shape == (0,)


# ---------------------------------------------------------------- FDS


def _fds_reference(order, scene, xyz, feats, budget, radius, tau):
    """Row-by-row FDS against every accepted row (the paper's loop)."""
    norms = np.linalg.norm(feats, axis=1)
    accepted: list[int] = []
    for i in order:
        if len(accepted) == budget:
            break
        suppressed = any(
            scene[i] == scene[j]
            and np.square(xyz[i] - xyz[j]).sum() < radius * radius
            and norms[i] > 0 and norms[j] > 0
            and feats[i] @ feats[j] / (norms[i] * norms[j]) > tau
            for j in accepted)
        if not suppressed:
            accepted.append(int(i))
    return np.array(accepted, dtype=np.int64)


def test_fds_suppresses_only_near_and_similar() -> None:
    xyz = np.array([[0, 0, 0], [0.1, 0, 0], [0.1, 0, 0], [1.0, 0, 0], [0, 0, 0]], dtype=np.float32)
    feats = np.array([[1, 0], [1, 0.1], [0, 1], [1, 0], [1, 0]], dtype=np.float32)
    scene = np.array([0, 0, 0, 0, 1])
    # 1: near 0 and similar -> suppressed; 2: near but orthogonal -> kept; 3: far -> kept;
    # 4: same place and features as 0 but another scene -> kept
    assert fds_select(np.arange(5), scene, xyz, feats, 10).tolist() == [0, 2, 3, 4]
    # the ranking decides who suppresses whom
    assert fds_select(np.array([1, 0, 2, 3, 4]), scene, xyz, feats, 10).tolist() == [1, 2, 3, 4]
    # a subset ranking: rows left out are never considered
    assert fds_select(np.array([1, 3]), scene, xyz, feats, 10).tolist() == [1, 3]
    # a smaller radius (0.05 m) no longer reaches row 1 from row 0: all kept
    assert fds_select(np.arange(5), scene, xyz, feats, 10, radius=0.05).tolist() == [0, 1, 2, 3, 4]
    # scene ids of any sortable kind
    names = np.array(["a", "a", "a", "a", "b"])
    assert fds_select(np.arange(5), names, xyz, feats, 10).tolist() == [0, 2, 3, 4]


def test_fds_thresholds_are_strict_and_zero_vectors_dissimilar() -> None:
    xyz = np.array([[0, 0, 0], [0.25, 0, 0], [0.25, 0, 0]])
    feats = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    scene = np.zeros(3, dtype=np.int64)
    # distance exactly 0.25 = radius: not inside; cosine exactly 0 with tau = 0: not above
    assert fds_select(np.arange(3), scene, xyz, feats, 5, radius=0.25).tolist() == [0, 1, 2]
    assert fds_select(np.arange(3), scene, xyz, feats, 5, radius=0.3, tau=0.0).tolist() == [0, 2]
    # with tau = -2 every nonzero pair is similar, a zero vector is not
    same = np.zeros((3, 3))
    feats = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    assert fds_select(np.arange(3), scene, same, feats, 5, tau=-2.0).tolist() == [0, 1]


def test_fds_budget_and_validation() -> None:
    xyz = np.column_stack([np.arange(50, dtype=np.float64), np.zeros(50), np.zeros(50)])
    feats = np.ones((50, 4))
    scene = np.zeros(50, dtype=np.int64)
    order = np.arange(50)[::-1]
    assert fds_select(order, scene, xyz, feats, 7).tolist() == list(range(49, 42, -1))
    assert fds_select(order, scene, xyz, feats, 0).tolist() == []
    assert len(fds_select(order, scene, xyz, feats, 500)) == 50
    for bad in ({"budget": -1}, {"radius": 0.0}, {"tau": float("nan")}):
        args = {"budget": 5, "radius": 0.2, "tau": 0.8} | bad
        with pytest.raises(PcalError):
            fds_select(order, scene, xyz, feats, **args)
    with pytest.raises(PcalError, match="more than once"):
        fds_select(np.array([1, 1]), scene, xyz, feats, 5)
    with pytest.raises(PcalError, match="outside"):
        fds_select(np.array([50]), scene, xyz, feats, 5)
    with pytest.raises(PcalError, match="features"):
        fds_select(order, scene, xyz, feats[:10], 5)


@pytest.mark.parametrize("seed", range(4))
def test_fds_matches_row_by_row_reference(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    n = 600
    xyz = rng.random((n, 3)) * rng.uniform(0.3, 1.5)
    scene = rng.integers(0, 3, n)
    feats = rng.normal(size=(n, 6)) + rng.uniform(0, 2) * np.eye(6)[0]
    feats[rng.random(n) < 0.05] = 0.0
    order = rng.permutation(n)[: int(rng.integers(200, n))]
    budget = int(rng.integers(1, 250))
    expected = _fds_reference(order, scene, xyz, feats.astype(np.float32), budget, 0.2, 0.5)
    results = []
    for min_chunk, sweeps in ((4096, 32), (13, 0), (5, 1)):  # one chunk; many chunks, row walk; mixed
        monkeypatch.setattr(fds_module, "MIN_CHUNK", min_chunk)
        monkeypatch.setattr(fds_module, "MAX_CHUNK", max(min_chunk, 64))
        monkeypatch.setattr(fds_module, "SWEEPS", sweeps)
        results.append(fds_select(order, scene, xyz, feats, budget, radius=0.2, tau=0.5))
    for got in results:
        assert np.array_equal(got, expected)
    assert len(expected) <= budget
    assert np.array_equal(fds_select(order, scene, xyz, feats, budget, 0.2, 0.5), results[-1])  # deterministic


def _fds_by_the_rule(order, scene, xyz, feats, budget, radius, tau):
    """FDS as the module docstring states it, one row at a time against every accepted row:
    float64 squared distances, float32 cosines of the float32 unit rows."""
    f = np.asarray(feats, dtype=np.float32)
    norm = np.sqrt(np.einsum("ij,ij->i", f, f))
    live = np.isfinite(norm) & (norm > 0)
    unit = np.where(live[:, None], f / np.where(live, norm, 1.0)[:, None], 0.0).astype(np.float32)
    pos = np.asarray(xyz).astype(np.float64)
    accepted: list[int] = []
    for row in order:
        if len(accepted) == budget:
            break
        acc = np.array(accepted, dtype=np.int64)
        near = (scene[acc] == scene[row]) & live[acc] & live[row]
        near &= np.square(pos[acc] - pos[row]).sum(axis=1) < radius * radius
        cosine = np.einsum("ij,ij->i", unit[acc[near]], np.repeat(unit[[row]], int(near.sum()), axis=0))
        if not (cosine > tau).any():
            accepted.append(int(row))
    return np.array(accepted, dtype=np.int64)


def _fds_instance(seed: int):
    """Small FDS problems full of edge cases: grid coordinates (pairs exactly at the radius) with
    some nudged by one unit in the last place either way, duplicate points and feature rows, zero
    rows, tied scores (ranked by a stable sort), a few scenes, features from one to three
    prototypes with no, tiny or large noise (cosines far above, near and below ``tau``)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(300, 900))
    radius = float(rng.choice([0.125, 0.2, 0.25]))
    step = radius / float(rng.choice([1, 2, 4]))
    xyz = rng.integers(0, int(rng.integers(4, 12)), size=(n, 3)) * step
    nudge = rng.random((n, 3)) < 0.15
    xyz = np.where(nudge, np.nextafter(xyz, np.where(rng.random((n, 3)) < 0.5, -np.inf, np.inf)), xyz)
    dup = rng.random(n) < 0.1
    xyz[dup] = xyz[rng.integers(0, n, int(dup.sum()))]
    dim = int(rng.choice([2, 5, 16]))
    protos = rng.normal(size=(int(rng.integers(1, 4)), dim))
    feats = protos[rng.integers(0, len(protos), n)] + float(rng.choice([0.0, 1e-3, 0.3])) * rng.normal(size=(n, dim))
    same = rng.random(n) < 0.1
    feats[same] = feats[rng.integers(0, n, int(same.sum()))]
    feats[rng.random(n) < 0.05] = 0.0
    if rng.random() < 0.5:
        xyz = xyz.astype(np.float32)
    scene = rng.integers(0, int(rng.integers(1, 4)), n)
    scores = rng.integers(0, 6, n).astype(np.float64)  # many ties
    order = np.argsort(scores, kind="stable")[: int(rng.integers(n // 2, n + 1))]
    budget = int(rng.integers(1, n))
    tau = float(rng.choice([-1.0, 0.0, 0.5, 0.8, 0.95, 0.999]))
    return order, scene, xyz, feats.astype(np.float32), budget, radius, tau


@pytest.mark.parametrize("seed", range(12))
def test_fds_fast_path_is_bit_identical_to_the_rule(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    order, scene, xyz, feats, budget, radius, tau = _fds_instance(seed)
    expected = _fds_by_the_rule(order, scene, xyz, feats, budget, radius, tau)
    assert np.array_equal(fds_select(order, scene, xyz, feats, budget, radius, tau), expected)
    # many small chunks: the accepted-row grid, the angle bounds, the row-by-row finish and the
    # one-pass summary of every feature row (a long walk) all take part
    for first, low, high, sweeps in ((16, 8, 64, 32), (7, 3, 29, 0), (64, 64, 64, 1)):
        monkeypatch.setattr(fds_module, "FIRST_CHUNK", first)
        monkeypatch.setattr(fds_module, "MIN_CHUNK", low)
        monkeypatch.setattr(fds_module, "MAX_CHUNK", high)
        monkeypatch.setattr(fds_module, "SWEEPS", sweeps)
        got = fds_select(order, scene, xyz, feats, budget, radius, tau)
        assert np.array_equal(got, expected), (first, low, high, sweeps)
    # the float32 cosine decides every pair (bounds disabled by a huge error allowance): same result
    monkeypatch.setattr(fds_module, "ERROR_ULPS", 1e9)
    assert np.array_equal(fds_select(order, scene, xyz, feats, budget, radius, tau), expected)


def test_fds_bounds_decide_most_pairs_of_a_dense_similar_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dense pool of nearly parallel features: the angle bounds settle the pairs, so few float32
    cosines are computed, and the result is the rule's."""
    rng = np.random.default_rng(3)
    n = 3000
    xyz = rng.random((n, 3)) * 0.6
    feats = (np.ones(8) + rng.normal(scale=0.05, size=(n, 8))).astype(np.float32)
    order = rng.permutation(n)
    computed = []
    real_unit_of = fds_module._Side.unit_of

    def counting_unit_of(self, index):
        computed.append(len(index))
        return real_unit_of(self, index)

    monkeypatch.setattr(fds_module._Side, "unit_of", counting_unit_of)
    monkeypatch.setattr(fds_module, "FIRST_CHUNK", 256)
    got = fds_select(order, np.zeros(n, dtype=np.int64), xyz, feats, 500, 0.2, 0.8)
    monkeypatch.undo()
    assert np.array_equal(got, _fds_by_the_rule(order, np.zeros(n, dtype=np.int64), xyz, feats, 500, 0.2, 0.8))
    assert len(got) < 500  # saturated: the whole ranking was walked
    assert sum(computed) < 0.05 * n  # cosines computed (twice per pair), out of thousands of near pairs

# ---------------------------------------------------------------- EMA


def _toy(weight, bias, gamma, beta, mean, var, batches) -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([weight]))
        model[0].bias.copy_(torch.tensor([bias]))
        model[1].weight.copy_(torch.tensor([gamma]))
        model[1].bias.copy_(torch.tensor([beta]))
        model[1].running_mean.copy_(torch.tensor([mean]))
        model[1].running_var.copy_(torch.tensor([var]))
        model[1].num_batches_tracked.fill_(batches)
    return model


def test_ema_update_exact_with_batchnorm() -> None:
    teacher = _toy([1.0, 2.0], 0.5, 1.0, 0.0, 0.0, 1.0, 0)
    student = _toy([3.0, -2.0], 1.5, 2.0, 1.0, 4.0, 3.0, 7)
    ema_update(teacher, student, keep=0.75)
    # 0.75 * teacher + 0.25 * student, by hand
    assert teacher[0].weight.tolist() == [[1.5, 1.0]]
    assert teacher[0].bias.tolist() == [0.75]
    assert teacher[1].weight.tolist() == [1.25]
    assert teacher[1].bias.tolist() == [0.25]
    assert teacher[1].running_mean.tolist() == [1.0]
    assert teacher[1].running_var.tolist() == [1.5]
    assert int(teacher[1].num_batches_tracked) == 7  # integer buffer copied
    assert student[0].weight.tolist() == [[3.0, -2.0]]  # the student is untouched
    ema_update(teacher, student, keep=0.0)
    assert teacher[1].running_var.tolist() == [3.0]
    with pytest.raises(PcalError, match="keep"):
        ema_update(teacher, student, keep=1.5)
    with pytest.raises(PcalError):
        ema_update(nn.Linear(2, 1), student, keep=0.5)


def test_make_teacher_is_an_independent_frozen_copy() -> None:
    student = _toy([3.0, -2.0], 1.5, 2.0, 1.0, 4.0, 3.0, 7)
    student(torch.randn(4, 2)).sum().backward()
    teacher = make_teacher(student)
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    with torch.no_grad():
        student[0].weight.add_(1.0)
    assert teacher[0].weight.tolist() == [[3.0, -2.0]]
    teacher.eval()
    assert student.training and not teacher.training
    ema_update(teacher, student, keep=0.5)
    assert teacher[0].weight.tolist() == [[3.5, -1.5]]


# ---------------------------------------------------------------- strong view


def _two_clusters(rng: np.random.Generator) -> np.ndarray:
    a = rng.normal(0.0, 0.05, (200, 3))
    b = rng.normal(0.0, 0.05, (200, 3)) + [4.0, 3.0, 1.0]
    return np.concatenate([a, b]).astype(np.float32)


def test_strong_view_keeps_points_and_order() -> None:
    rng = np.random.default_rng(0)
    xyz = _two_clusters(rng)
    rgb = rng.integers(0, 256, (400, 3)).astype(np.uint8)
    out, colours = strong_view(xyz, rgb, np.random.default_rng(1))
    assert out.shape == xyz.shape and out.dtype == np.float32
    assert colours.shape == rgb.shape and colours.dtype == np.uint8
    assert not np.allclose(out, xyz, atol=1e-3)
    # point i is still point i: each cluster stays tight and the clusters stay about 5.1 m apart
    for part in (out[:200], out[200:]):
        assert np.linalg.norm(part - part.mean(axis=0), axis=1).max() < 0.6
    gap = np.linalg.norm(out[:200].mean(axis=0) - out[200:].mean(axis=0))
    assert 4.0 < gap < 6.5
    again, colours2 = strong_view(xyz, rgb, np.random.default_rng(1))
    assert np.array_equal(out, again) and np.array_equal(colours, colours2)
    other, _ = strong_view(xyz, rgb, np.random.default_rng(2))
    assert not np.array_equal(out, other)
    only_xyz, none = strong_view(xyz, None, np.random.default_rng(1))
    assert none is None and only_xyz.shape == xyz.shape


def test_strong_view_without_elastic_is_a_linear_map_of_the_points() -> None:
    xyz = np.random.default_rng(3).random((500, 3)) * [4.0, 3.0, 2.5]
    design = np.concatenate([xyz, np.ones((len(xyz), 1))], axis=1)

    def residual(out: np.ndarray) -> float:
        fit = np.linalg.lstsq(design, out.astype(np.float64), rcond=None)[0]
        return float(np.abs(design @ fit - out).max())

    plain, _ = strong_view(xyz, None, np.random.default_rng(1), elastic=False)
    distorted, _ = strong_view(xyz, None, np.random.default_rng(1))  # this draw distorts (p 0.95)
    assert residual(plain) < 1e-4  # rotation, tilt and scaling only
    assert residual(distorted) > 0.05  # elastic displacements of centimetres


def test_rotation_about_z_without_tilt_is_rigid_and_keeps_z() -> None:
    rng = np.random.default_rng(5)
    xyz = rng.random((300, 3)) * [5.0, 4.0, 3.0]
    out = rotate_tilt_scale(xyz, np.random.default_rng(9), p_tilt=0.0, p_scale=0.0)
    np.testing.assert_allclose(out[:, 2], xyz[:, 2], atol=1e-9)
    assert not np.allclose(out[:, :2], xyz[:, :2])
    def dist(p: np.ndarray) -> np.ndarray:
        return np.linalg.norm(p[:, None] - p[None], axis=2)

    np.testing.assert_allclose(dist(out), dist(xyz), atol=1e-9)
    # with the small tilts and scaling z moves, but little: at most pi/64 of tilt and 10% scale
    tilted = rotate_tilt_scale(xyz, np.random.default_rng(9), p_tilt=1.0, p_scale=1.0)
    assert 0 < np.abs(tilted[:, 2] - xyz[:, 2]).max() < 0.1 * 3.0 + np.sin(np.pi / 64) * 2 * 6.5


def test_elastic_distortion_is_smooth_and_sized() -> None:
    rng = np.random.default_rng(0)
    xyz = rng.random((20000, 3)) * [6.0, 5.0, 3.0]
    moved = elastic_distortion(xyz, 0.8, 0.18, np.random.default_rng(4))
    shift = moved - xyz
    assert 0.08 < shift.std() < 0.3  # per-axis std about the magnitude
    near = xyz + [0.005, 0.0, 0.0]  # 5 mm away: almost the same displacement
    shift_near = elastic_distortion(near, 0.8, 0.18, np.random.default_rng(4)) - near
    assert np.abs(shift_near - shift).max() < 0.02
    assert np.array_equal(moved, elastic_distortion(xyz, 0.8, 0.18, np.random.default_rng(4)))
    assert np.array_equal(elastic_distortion(xyz, 0.2, 0.0, rng), xyz)


def test_strong_colours(monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = np.random.default_rng(0).integers(40, 200, (500, 3)).astype(np.uint8)
    out = strong_colours(rgb, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == rgb.shape and not np.array_equal(out, rgb)
    for name in ("P_AUTOCONTRAST", "P_TRANSLATE", "P_JITTER"):
        monkeypatch.setattr(views_module, name, 0.0)
    assert np.array_equal(strong_colours(rgb, np.random.default_rng(0)), rgb)
    monkeypatch.setattr(views_module, "P_AUTOCONTRAST", 1.0)
    stretched = strong_colours(rgb, np.random.default_rng(0)).astype(int)
    # blended toward 0..255: the range can only grow
    assert (stretched.max(axis=0) - stretched.min(axis=0) >= rgb.max(axis=0) - rgb.min(axis=0)).all()


# ---------------------------------------------------------------- teacher-student loss


def test_teacher_student_loss_parts() -> None:
    student = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.0, 0.0], [1.0, 1.0, 1.0]],
                           requires_grad=True)
    # row 1: teacher p(0) = e^4 / (e^4 + 2) = 0.96 (confident); row 3: uniform (not confident);
    # row 0: confident but labelled, so never pseudo-labelled
    teacher = torch.tensor([[5.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]],
                           requires_grad=True)
    labels = torch.tensor([1, -1, 2, -1])
    loss, parts = teacher_student_loss(student, teacher, labels, weights=(1.0, 0.5, 2.0))
    sup = F.cross_entropy(student[[0, 2]], labels[[0, 2]])
    kl = F.kl_div(F.log_softmax(student, 1), F.log_softmax(teacher, 1), log_target=True, reduction="batchmean")
    pseudo = F.cross_entropy(student[[1]], torch.tensor([0]))
    assert parts["supervised"] == pytest.approx(float(sup.detach()), rel=1e-6)
    assert parts["consistency"] == pytest.approx(float(kl.detach()), rel=1e-6)
    assert parts["pseudo"] == pytest.approx(float(pseudo.detach()), rel=1e-6)
    assert loss.item() == pytest.approx(float((sup + 0.5 * kl + 2.0 * pseudo).detach()), rel=1e-6)
    assert parts["total"] == pytest.approx(loss.item(), rel=1e-6)
    assert parts["labelled"] == 2.0 and parts["confident"] == 1.0
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None  # the teacher is detached
    # a higher threshold drops row 1 (0.96 < 0.97)
    _, parts = teacher_student_loss(student, teacher, labels, threshold=0.97)
    assert parts["pseudo"] == 0.0 and parts["confident"] == 0.0


def test_teacher_student_loss_zero_safe() -> None:
    student = torch.randn(5, 4, requires_grad=True)
    teacher = torch.zeros(5, 4)  # uniform: nothing confident
    loss, parts = teacher_student_loss(student, teacher, torch.full((5,), -1))
    assert parts["supervised"] == 0.0 and parts["pseudo"] == 0.0 and parts["consistency"] > 0
    loss.backward()
    assert torch.isfinite(student.grad).all()
    empty = torch.zeros(0, 4, requires_grad=True)
    loss, parts = teacher_student_loss(empty, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0 and all(v == 0.0 for v in parts.values())
    loss.backward()
    # identical views, every row labelled: no KL and no pseudo-labels
    logits = torch.randn(3, 4, requires_grad=True)
    _, parts = teacher_student_loss(logits, logits.detach().clone(), torch.tensor([0, 1, 3]))
    assert parts["consistency"] == pytest.approx(0.0, abs=1e-6) and parts["pseudo"] == 0.0


def test_teacher_student_loss_rejects_bad_input() -> None:
    with pytest.raises(PcalError, match="shape"):
        teacher_student_loss(torch.zeros(3, 4), torch.zeros(3, 5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(PcalError, match="label 4"):
        teacher_student_loss(torch.zeros(3, 4), torch.zeros(3, 4), torch.tensor([0, 4, -1]))
    with pytest.raises(PcalError, match="labels"):
        teacher_student_loss(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3))
    with pytest.raises(PcalError, match="weights"):
        teacher_student_loss(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), weights=(1, 1))


def test_ramps_start_at_zero_and_pseudo_labels_wait_for_the_teacher() -> None:
    from pcal_cli.training.mean_teacher import ramp_steps
    from pcal_cli.training.teacher_student import ramp_weights

    assert ramp_weights(0, 10) == (1.0, 0.0, 0.0)
    assert ramp_weights(5, 10)[1] == pytest.approx(0.5) and ramp_weights(9, 10)[2] == 0.0
    assert ramp_weights(10, 10) == (1.0, 1.0, 1.0) and ramp_weights(50, 10) == (1.0, 1.0, 1.0)
    weights = [ramp_weights(s, 10)[1] for s in range(12)]
    assert weights == sorted(weights)  # rises monotonically
    assert ramp_weights(0, 0) == (1.0, 1.0, 1.0)  # no ramp: the release's constant weights
    assert ramp_steps(0.3, 1000) == 300 and ramp_steps(40, 1000) == 40


def test_kl_normalisation_class_mean_is_one_over_c_of_row_mean() -> None:
    student = torch.randn(6, 5)
    teacher = torch.randn(6, 5)
    labels = torch.full((6,), -1)
    _, rows = teacher_student_loss(student, teacher, labels, kl="row-mean")
    _, classes = teacher_student_loss(student, teacher, labels, kl="class-mean")
    assert classes["consistency"] == pytest.approx(rows["consistency"] / 5, rel=1e-6)
    release = F.kl_div(F.log_softmax(student, 1), F.log_softmax(teacher, 1), log_target=True, reduction="mean")
    assert classes["consistency"] == pytest.approx(float(release), rel=1e-5)  # torch's element-wise mean
    with pytest.raises(PcalError, match="kl"):
        teacher_student_loss(student, teacher, labels, kl="sum")
