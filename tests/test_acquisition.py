"""Acquisition scorers: hand-computed values, unit aggregation, MC-dropout modes, the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import pcal_cli.acquisition.uncertainty as uncertainty_module
from pcal_cli.acquisition import (
    SCORERS,
    confidence,
    enable_dropout,
    entropy,
    get_scorer,
    margin,
    mc_dropout_entropy,
    mc_dropout_probs,
    pool_features,
    random_scores,
    segment_entropy,
    unit_scores,
    with_classifier_dropout,
)
from pcal_cli.acquisition.mc_dropout import DROPOUT_TYPES
from pcal_cli.errors import PcalError
from pcal_cli.models import build_model
from pcal_cli.sparse import SparseTensor

# Rows: certain, a two-way tie, skewed, uniform over 3 classes.
PROBS = np.array(
    [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]], dtype=np.float32
)
H_SKEWED = 0.8018185525433373  # -(0.7 ln 0.7 + 0.2 ln 0.2 + 0.1 ln 0.1), by hand


# ---------------------------------------------------------------- point scores


def test_confidence_by_hand() -> None:
    np.testing.assert_allclose(confidence(PROBS), [0.0, 0.5, 0.3, 2 / 3], rtol=0, atol=1e-6)


def test_margin_by_hand() -> None:
    np.testing.assert_allclose(margin(PROBS), [0.0, 1.0, 0.5, 1.0], rtol=0, atol=1e-6)


def test_entropy_by_hand_and_safe_at_zero() -> None:
    h = entropy(PROBS)
    assert np.all(np.isfinite(h))
    assert h[0] == 0.0  # 1 ln 1 + 0 ln 0 + 0 ln 0
    np.testing.assert_allclose(h, [0.0, math.log(2), H_SKEWED, math.log(3)], rtol=1e-6)


def test_less_certain_rows_score_higher() -> None:
    sure, unsure = [0.9, 0.05, 0.05], [0.4, 0.35, 0.25]
    probs = np.array([sure, unsure], dtype=np.float32)
    for score in (confidence, margin, entropy):
        s = score(probs)
        assert s[1] > s[0], score.__name__


def test_chunked_scores_match_a_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    probs = rng.random((103, 7)).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    monkeypatch.setattr(uncertainty_module, "CHUNK_ROWS", 10)
    top = np.sort(probs, axis=1)
    np.testing.assert_allclose(margin(probs), 1 - (top[:, -1] - top[:, -2]), atol=1e-6)
    np.testing.assert_allclose(entropy(probs), -(probs * np.log(probs)).sum(axis=1), atol=1e-5)
    assert margin(probs).shape == entropy(probs).shape == (103,)


def test_random_scores_follow_the_seed() -> None:
    a = random_scores(50, np.random.default_rng(3))
    assert np.array_equal(a, random_scores(50, np.random.default_rng(3)))
    assert not np.array_equal(a, random_scores(50, np.random.default_rng(4)))
    assert a.shape == (50,) and a.min() >= 0 and a.max() < 1


def test_bad_probability_shape_is_a_user_error() -> None:
    with pytest.raises(PcalError):
        entropy(np.ones(5, dtype=np.float32))


def test_mc_dropout_entropy_is_the_entropy_of_the_mean() -> None:
    passes = np.array([[[0.9, 0.1], [1.0, 0.0]], [[0.1, 0.9], [1.0, 0.0]]], dtype=np.float32)
    # point 0: mean (0.5, 0.5) -> ln 2 (the mean of the per-pass entropies would be 0.325)
    np.testing.assert_allclose(mc_dropout_entropy(passes), [math.log(2), 0.0], atol=1e-6)


# ---------------------------------------------------------------- units


def test_segment_entropy_by_hand() -> None:
    pred = np.array([2, 2, 2, 0, 1, 0, 1, 2, 5, 5])
    unit = np.array([7, 7, 7, 3, 3, 3, 3, -1, 9, 9])
    units, scores = segment_entropy(pred, unit, num_classes=6)
    assert units.tolist() == [3, 7, 9]
    np.testing.assert_allclose(scores, [math.log(2), 0.0, 0.0], atol=1e-12)


def test_segment_entropy_uses_available_points_only() -> None:
    pred = np.array([0, 1, 2, 0, 0])
    unit = np.array([0, 0, 0, 1, 1])
    available = np.array([True, True, False, False, False])
    units, scores = segment_entropy(pred, unit, 3, available)
    assert units.tolist() == [0]
    np.testing.assert_allclose(scores, [math.log(2)])
    with pytest.raises(PcalError):
        segment_entropy(np.array([0, 3]), np.array([0, 0]), num_classes=3)


@pytest.mark.parametrize("offset", [0, 10**12])  # dense ids (bincount) and sparse ids (unique)
def test_unit_scores_mean_and_max_over_available_points(offset: int) -> None:
    scores = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], dtype=np.float32)
    unit = np.array([0, 0, 1, 1, -1, 2, 1, 5]) + np.where(np.arange(8) == 4, 0, offset)
    available = np.array([True, True, False, True, True, False, True, True])
    units, mean, costs = unit_scores(scores, unit, available, how="mean")
    assert units.tolist() == [offset, offset + 1, offset + 5]  # unit 2 has no available point
    np.testing.assert_allclose(mean, [1.5, 5.5, 8.0])  # point 2 (unavailable) left out
    assert costs.tolist() == [2, 2, 1] and costs.dtype == np.int64 and mean.dtype == np.float64
    units_max, top, costs_max = unit_scores(scores, unit, available, how="max")
    assert np.array_equal(units_max, units) and np.array_equal(costs_max, costs)
    np.testing.assert_allclose(top, [2.0, 7.0, 8.0])


def test_unit_scores_reject_unknown_aggregation() -> None:
    with pytest.raises(PcalError, match="max, mean"):
        unit_scores(np.ones(2), np.zeros(2, np.int64), None, how="median")


def test_pool_features_match_a_loop() -> None:
    rng = np.random.default_rng(1)
    n, d = 500, 6
    features = rng.normal(size=(n, d)).astype(np.float32)
    unit = rng.integers(-1, 40, n)
    available = rng.random(n) < 0.7
    pooled = pool_features(features, unit, available)
    units, _, _ = unit_scores(np.zeros(n), unit, available)
    expected = np.stack([features[(unit == u) & available].mean(axis=0) for u in units])
    assert pooled.shape == (len(units), d) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, expected, atol=1e-5)


# ---------------------------------------------------------------- MC-dropout on models


def random_voxels(seed: int, count: int = 300, side: int = 12, channels: int = 4) -> SparseTensor:
    g = torch.Generator().manual_seed(seed)
    cells = torch.unique(torch.randint(0, side, (count, 3), generator=g), dim=0)
    coords = torch.cat([torch.zeros(len(cells), 1, dtype=cells.dtype), cells], dim=1).to(torch.int32)
    return SparseTensor(torch.randn(len(coords), channels, generator=g), coords)


def modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


@pytest.mark.parametrize("start_training", [False, True])
def test_enable_dropout_samples_with_batchnorm_in_eval(start_training: bool) -> None:
    x = random_voxels(0)
    model = build_model("spvcnn", 4, 5, cr=0.25, seed=0)
    model.train(start_training)
    before = modes(model)
    with torch.no_grad(), enable_dropout(model):
        for m in model.modules():
            assert m.training == isinstance(m, DROPOUT_TYPES), type(m).__name__
        assert not torch.equal(model(x)[0], model(x)[0])
    assert modes(model) == before


def test_classifier_dropout_hook_on_minkunet_is_removed_on_exit() -> None:
    x = random_voxels(1)
    model = build_model("minkunet", 4, 5, cr=0.25, seed=0).eval()
    with torch.no_grad():
        plain = model(x)
        with with_classifier_dropout(model, p=0.3):
            first, second = model(x), model(x)
        after = model(x)
    assert not torch.equal(first[0], second[0])  # logits sample
    assert torch.equal(first[1], plain[1])  # features (the classifier's input) are untouched
    assert len(model.classifier._forward_pre_hooks) == 0
    assert torch.equal(after[0], plain[0])


def test_mc_dropout_probs_are_seeded_and_leave_no_trace() -> None:
    x = random_voxels(2)
    model = build_model("minkunet", 4, 5, cr=0.25, seed=0).eval()
    state = torch.get_rng_state()
    a = mc_dropout_probs(model, x, passes=3, seed=7)
    b = mc_dropout_probs(model, x, passes=3, seed=7)
    c = mc_dropout_probs(model, x, passes=3, seed=8)
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5)
    assert not model.training and len(model.classifier._forward_pre_hooks) == 0


# ---------------------------------------------------------------- registry


def test_registry_lists_the_baselines() -> None:
    assert {"random", "confidence", "margin", "entropy", "mc_dropout", "segment_entropy", "coreset",
            "redal"} <= set(SCORERS)
    assert get_scorer("redal").scene_score is not None and get_scorer("redal").point_score is None
    assert get_scorer("mc_dropout").needs_passes == 10
    assert get_scorer("segment_entropy").unit_level and get_scorer("segment_entropy").point_score is None
    coreset = get_scorer(" CoreSet ")
    assert coreset.needs_features and coreset.selector == "kcenter"
    assert not coreset.point_score(PROBS).any()
    np.testing.assert_allclose(get_scorer("entropy").point_score(PROBS), entropy(PROBS))
    rnd = get_scorer("random")
    assert rnd.needs_rng and rnd.point_score(PROBS, np.random.default_rng(0)).shape == (4,)


def test_unknown_scorer_is_one_line_listing_the_names() -> None:
    with pytest.raises(PcalError) as info:
        get_scorer("badge")
    message = str(info.value)
    assert "\n" not in message and "entropy" in message and "coreset" in message


def test_segment_entropy_is_the_mean_over_supervoxel_pieces() -> None:
    # one unit of two supervoxels: each is pure (entropy 0) although the unit mixes two classes
    pred = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    units = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    supervoxels = np.array([5, 5, 6, 6, 7, 7, 8, 8])
    _, whole = segment_entropy(pred, units, 3)
    _, pieces = segment_entropy(pred, units, 3, segments=supervoxels)
    assert whole[0] == pytest.approx(np.log(2)) and pieces[0] == pytest.approx(0.0)
    assert pieces[1] == pytest.approx((0.0 + np.log(2)) / 2)  # pieces {2, 2} and {2, 0}


def test_dropout_is_trained_in_the_network_and_keeps_checkpoint_keys() -> None:
    from pcal_cli.models import build_model
    from pcal_cli.acquisition.mc_dropout import has_dropout

    plain = build_model("minkunet", 6, 13, cr=0.125, seed=0)
    dropped = build_model("minkunet", 6, 13, cr=0.125, seed=0, dropout=0.3)
    assert not has_dropout(plain) and has_dropout(dropped)
    assert plain.state_dict().keys() == dropped.state_dict().keys()
    x = random_voxels(0, count=2000, side=30, channels=6)
    dropped.train()
    a, _ = dropped(x)
    b, _ = dropped(x)
    assert not torch.equal(a, b)  # dropout samples in training
    from pcal_cli.methods import get_method

    assert get_method("mc_dropout").dropout == 0.3 and get_method("margin").dropout == 0.0
