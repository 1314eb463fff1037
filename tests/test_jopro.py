"""JoPro building blocks: flow density, prototypes, feature-mixing stability, selection, contrastive terms."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

import pcal_cli.jopro.fms as fms_module
from pcal_cli.errors import PcalError
from pcal_cli.jopro import (
    FeatureFlow,
    SubPrototypes,
    class_prototypes,
    fit_flow,
    fms_scores,
    hybrid_contrastive_loss,
    jopro_select,
    l2_normalise,
    mixing_table,
)
from pcal_cli.jopro.select import prototype_keep, spatial_keep

# ---------------------------------------------------------------- flow


def _randomised(flow: FeatureFlow, seed: int = 0) -> FeatureFlow:
    """The flow with every parameter perturbed (a new flow is the identity: too easy a test)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


@pytest.mark.parametrize("dim", [2, 5])
def test_log_prob_is_the_exact_change_of_variables(dim: int) -> None:
    flow = _randomised(FeatureFlow(dim, 3, blocks=4, hidden=16, seed=dim)).double()
    x = torch.randn(4, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    logp = flow.log_prob(x)
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda v: flow.latent(v[None])[0], x[i])
        z = flow.latent(x[i:i + 1])[0]
        base = -0.5 * float((z @ z).detach()) - 0.5 * dim * math.log(2 * math.pi)
        expected = base + float(torch.linalg.slogdet(jac).logabsdet)
        assert float(logp[i].detach()) == pytest.approx(expected, abs=1e-9)
    assert flow.classify(x).shape == (4, 3)


def test_every_coordinate_is_transformed_by_a_pair_of_blocks() -> None:
    flow = _randomised(FeatureFlow(5, 2, blocks=2, hidden=8, seed=3)).double()
    x = torch.randn(1, 5, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: flow.latent(v[None])[0], x[0])
    # after the ActNorm (diagonal), each output depends on some input other than its own slot
    off = jac.abs() * (1 - torch.eye(5, dtype=torch.float64))
    assert (off.sum(dim=0) > 1e-6).all()  # every input influences another coordinate


def test_a_new_flow_is_the_identity_and_the_seed_fixes_the_parameters() -> None:
    x = torch.randn(10, 4)
    flow = FeatureFlow(4, 2, seed=5)
    assert torch.equal(flow.latent(x).sort(dim=1).values, x.sort(dim=1).values)  # a permutation
    normal = -0.5 * (x * x).sum(1) - 2 * math.log(2 * math.pi)
    assert torch.allclose(flow.log_prob(x), normal)
    same = FeatureFlow(4, 2, seed=5).state_dict()
    other = FeatureFlow(4, 2, seed=6).state_dict()
    assert all(torch.equal(v, same[k]) for k, v in flow.state_dict().items())
    assert not all(torch.equal(v, other[k]) for k, v in flow.state_dict().items())


def _two_gaussians(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 0.4, (n, 2)).astype(np.float32)
    x[:, 0] += np.where(y == 0, -1.5, 1.5)
    return x, y


@pytest.fixture(scope="module")
def toy_flow() -> tuple[FeatureFlow, float, dict]:
    """A flow + classifier fitted on two labelled 2-D Gaussians; also the mean log p before fitting."""
    x, y = _two_gaussians(2000, 0)
    flow = FeatureFlow(2, 2, blocks=4, hidden=32, seed=0)
    with torch.no_grad():
        before = float(flow.log_prob(torch.from_numpy(x)).mean())
    info = fit_flow(flow, x, y, steps=300, batch=512, lr=1e-2, density_weight=1.0, seed=0)
    return flow, before, info


def test_the_flow_fits_a_two_gaussian_toy(toy_flow) -> None:
    flow, before, info = toy_flow
    x, _ = _two_gaussians(1000, 1)  # fresh samples
    rng = np.random.default_rng(2)
    far = np.stack([rng.uniform(-5, 5, 500), rng.choice([-1, 1], 500) * rng.uniform(4, 6, 500)], 1)
    with torch.no_grad():
        on_toy = float(flow.log_prob(torch.from_numpy(x)).mean())
        on_noise = float(flow.log_prob(torch.from_numpy(far.astype(np.float32))).mean())
    assert on_toy > before + 0.8  # about -3.1 before, -1.9 after (the optimum is -1.7)
    assert on_toy > on_noise + 5.0
    assert info["samples"] == 2000 and info["labelled"] == 2000 and info["loss_last"] < info["loss_first"]


def test_fit_is_deterministic_and_subsamples() -> None:
    rng = np.random.default_rng(0)
    f = l2_normalise(rng.normal(size=(3000, 6)).astype(np.float32))
    y = rng.integers(-1, 3, 3000)
    states = []
    for seed in (4, 4, 5):
        flow = FeatureFlow(6, 3, blocks=2, hidden=8, seed=0)
        info = fit_flow(flow, f, y, steps=5, batch=64, max_samples=500, seed=seed)
        states.append(flow.state_dict())
        assert info["samples"] == 500 and np.isfinite(info["loss_last"])
    assert all(torch.equal(v, states[1][k]) for k, v in states[0].items())
    assert not all(torch.equal(v, states[2][k]) for k, v in states[0].items())


def test_flow_inputs_are_checked() -> None:
    flow = FeatureFlow(3, 2)
    with pytest.raises(PcalError):
        fit_flow(flow, np.zeros((5, 3)), np.array([0, 1, 2, 0, 0]))  # class 2 of 2
    with pytest.raises(PcalError):
        fit_flow(flow, np.zeros((5, 4)), np.zeros(5, np.int64))
    with pytest.raises(PcalError):
        FeatureFlow(1, 2)
    n = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(n, [[0.6, 0.8], [0, 0]])


# ---------------------------------------------------------------- prototypes


def test_prototypes_by_hand() -> None:
    lab_f = np.array([[1, 0], [3, 0], [0, 2], [100, 100]], np.float32)
    lab_y = np.array([0, 0, 2, -1])  # -1: ignored
    pool_f, pred, margin, scene = [], [], [], []
    for i, m in enumerate([0.5, 0.25, 0.9, 0.3, 0.7]):  # scene 0, predicted 0: lowest 20% of 5 = row (0, 3)
        pool_f.append([0, 2 * i + 1]), pred.append(0), margin.append(m), scene.append(0)
    for i in range(10):  # scene 1, predicted 0: lowest 2 of 10 = (19, 0) and (18, 0)
        pool_f.append([10 + i, 0]), pred.append(0), margin.append((9 - i) / 10), scene.append(1)
    for v, m in zip([5, 6, 7], [0.3, 0.2, 0.4]):  # scene 1, predicted 1: ceil(0.6) = 1 -> (6, 6)
        pool_f.append([v, v]), pred.append(1), margin.append(m), scene.append(1)
    protos, present = class_prototypes(lab_f, lab_y, np.array(pool_f, np.float32), np.array(pred),
                                       np.array(margin), np.array(scene), 4)
    assert protos.dtype == np.float32 and protos.shape == (4, 2)
    assert present.tolist() == [True, True, True, False]
    pool0 = (np.array([0, 3]) + [19, 0] + [18, 0]) / 3  # per scene, not the 3 lowest overall
    assert np.allclose(protos[0], 0.5 * np.array([2, 0]) + 0.5 * pool0)
    assert np.allclose(protos[1], [6, 6])  # no labelled point: the pool side alone
    assert np.allclose(protos[2], [0, 2])  # nothing predicted: the labelled side alone
    assert np.allclose(protos[3], 0)


def test_prototypes_check_class_ids() -> None:
    with pytest.raises(PcalError):
        class_prototypes(np.zeros((1, 2)), np.array([5]), np.zeros((1, 2)), np.array([0]),
                         np.array([0.1]), np.array([0]), 3)


# ---------------------------------------------------------------- feature-mixing stability


def test_fms_is_low_on_the_decision_boundary_and_high_far_from_it(toy_flow) -> None:
    flow = toy_flow[0]
    xs = np.linspace(-3, 3, 61)
    line = np.stack([xs, np.zeros_like(xs)], 1).astype(np.float32)
    protos = np.array([[-1.5, 0], [1.5, 0]], np.float32)
    s = fms_scores(flow, line, protos, np.array([True, True]), renormalise=False)
    assert s.shape == (61,) and s.dtype == np.float64
    assert abs(xs[np.argmin(s)]) < 0.5
    assert s[np.abs(xs) < 0.25].max() < 0.25  # about 0.12
    assert s[(np.abs(xs) > 1.2) & (np.abs(xs) < 1.8)].min() > 0.6  # about 0.8
    assert s.max() <= 1.0  # P <= 1 (scene-relative), margin <= 1


def test_fms_is_deterministic_ignores_absent_classes_and_is_scene_relative() -> None:
    flow = _randomised(FeatureFlow(4, 3, blocks=2, hidden=8, seed=1))
    rng = np.random.default_rng(0)
    f = l2_normalise(rng.normal(size=(40, 4)).astype(np.float32))
    protos = l2_normalise(rng.normal(size=(3, 4)).astype(np.float32))
    present = np.array([True, False, True])
    a = fms_scores(flow, f, protos, present, batch=7)
    assert np.array_equal(a, fms_scores(flow, f, protos, present, batch=7))
    assert np.allclose(a, fms_scores(flow, f, protos, present, batch=1000), atol=1e-6)
    junk = protos.copy()
    junk[1] = 99  # an absent class's row is never read
    assert np.array_equal(a, fms_scores(flow, f, junk, present, batch=7))
    assert not np.allclose(a, fms_scores(flow, f, protos, np.ones(3, bool), batch=7))
    # a scene's density is relative to that scene's densest mixture: splitting the points changes P
    scenes = np.repeat([0, 1], 20)
    split = fms_scores(flow, f, protos, present, scenes, batch=7)
    assert np.array_equal(split, fms_scores(flow, f, protos, present, np.repeat([5, -2], 20), batch=7))
    assert not np.allclose(split, a)
    assert mixing_table(2, draws=5, seed=0).shape == (5, 2)
    with pytest.raises(PcalError):
        fms_scores(flow, f, protos, np.zeros(3, bool))


@pytest.mark.parametrize(("dim", "blocks", "hidden"), [(2, 1, 4), (2, 4, 8), (5, 3, 8), (7, 6, 16), (16, 8, 32)])
def test_folded_flow_is_the_flow(dim: int, blocks: int, hidden: int) -> None:
    """The folded inference (permutations in the weights, feature-major, tanh via a sigmoid) gives
    the flow's log-density and logits, to float64 rounding."""
    flow = _randomised(FeatureFlow(dim, 4, blocks=blocks, hidden=hidden, seed=dim + blocks), seed=blocks).double()
    x = torch.randn(64, dim, generator=torch.Generator().manual_seed(dim), dtype=torch.float64)
    with torch.no_grad():
        logp, logits = flow.log_prob_and_logits(x)
        folded = fms_module._FoldedFlow(flow)
        ready = (x * torch.exp(flow.log_scale) + flow.shift * torch.exp(flow.log_scale))[:, folded.input_order]
        got_logp, got_logits = folded(ready.t().contiguous())
    assert torch.allclose(got_logp, logp, rtol=1e-12, atol=1e-9)
    assert torch.allclose(got_logits.t(), logits, rtol=1e-12, atol=1e-9)


def _fms_by_the_definition(flow, f, protos, present, scene_of, alphas, draws, seed, renormalise):
    """FMS as the module docstring states it: every mixture built and passed through the flow."""
    a = mixing_table(int(present.sum()), alphas, draws=draws, seed=seed).reshape(-1)
    anchors = np.tile(protos[present], (draws, 1))
    mixed = (1 - a)[None, :, None] * f[:, None, :] + a[None, :, None] * anchors[None]  # [N, S, D]
    if renormalise:
        mixed = mixed / np.maximum(np.linalg.norm(mixed, axis=-1, keepdims=True), 1e-12)
    with torch.no_grad():
        logp, logits = flow.log_prob_and_logits(torch.as_tensor(mixed.reshape(-1, f.shape[1])))
    n, s = mixed.shape[:2]
    ell = logp.numpy().reshape(n, s) / f.shape[1]
    q = torch.softmax(logits, dim=1).numpy().reshape(n, s, -1)
    scene_max = {sc: ell[scene_of == sc].max() for sc in np.unique(scene_of)}
    density = np.exp(ell - np.array([scene_max[sc] for sc in scene_of])[:, None]).mean(axis=1)
    top2 = np.sort(q.mean(axis=1), axis=1)[:, -2:]
    return density * (top2[:, 1] - top2[:, 0]) - q.var(axis=1).mean(axis=1)


@pytest.mark.parametrize(("renormalise", "alphas", "draws"), [
    (True, (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1), 3),
    (False, (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1), 3),
    (True, (0.03, 0.3), 4),  # most (coefficient, class) pairs drawn more than once
])
def test_fms_scores_follow_the_definition(renormalise: bool, alphas: tuple, draws: int) -> None:
    rng = np.random.default_rng(4)
    flow = _randomised(FeatureFlow(12, 5, blocks=6, hidden=16, seed=2), seed=3)
    for p in flow.parameters():  # keep the densities on a moderate scale
        p.data.mul_(0.3)
    f = l2_normalise(rng.normal(size=(90, 12))).astype(np.float32)
    protos = l2_normalise(rng.normal(size=(5, 12))).astype(np.float32)
    present = np.array([True, True, False, True, True])
    scene_of = rng.integers(0, 3, 90)
    expected = _fms_by_the_definition(flow.double(), f.astype(np.float64), protos.astype(np.float64), present,
                                      scene_of, alphas, draws, 7, renormalise)
    flow = flow.float()
    for batch in (1, 100, 2048):  # one point per chunk, a few, all
        got = fms_scores(flow, f, protos, present, scene_of, alphas=alphas, draws=draws, seed=7, batch=batch,
                         renormalise=renormalise)
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)
    assert np.ptp(expected) > 1e-2  # the scores differ between points: a real comparison


# ---------------------------------------------------------------- selection


def _line_case(xs: list[float], scores: list[float]) -> dict:
    n = len(xs)
    return dict(scores=np.array(scores), scene_of=np.zeros(n, np.int64),
                xyz=np.stack([np.array(xs), np.zeros(n), np.zeros(n)], 1),
                features=np.ones((n, 2)), protos=np.array([[1.0, 0.0]]), present=np.array([True]),
                candidate_fraction=1.0, tau=1.0)


def test_spatial_suppression_greedy_and_release_rule() -> None:
    case = _line_case([0.0, 0.3, 0.6, 1.2], [0.1, 0.2, 0.3, 0.4])
    assert jopro_select(budget=3, radius=0.45, **case).tolist() == [0, 2, 3]
    assert jopro_select(budget=4, radius=0.45, **case).tolist() == [0, 2, 3, 1]  # filled from the rest
    assert jopro_select(budget=3, radius=0.45, spatial_rule="local-min", **case).tolist() == [0, 3, 1]
    # Euclidean distance, not squared: 0.3 m apart survives a 0.2 m radius (0.09 < 0.2 would not)
    assert jopro_select(budget=2, radius=0.2, **_line_case([0.0, 0.3], [0.1, 0.2])).tolist() == [0, 1]
    assert jopro_select(budget=2, radius=0.2, **_line_case([0.0, 0.19], [0.2, 0.1])).tolist() == [1, 0]
    assert spatial_keep(np.array([[0.0, 0, 0], [0.5, 0, 0]]), 0.5).tolist() == [True, True]  # not closer


def test_prototype_suppression_keeps_the_lowest_per_prototype() -> None:
    feats = np.array([[1, 0.1], [0.1, 1], [1, 0.2], [1, 1], [1, -0.05], [0.05, 1]])
    scores = np.array([0.3, 0.2, 0.1, 0.05, 0.4, 0.25])
    n = len(scores)
    case = dict(scores=scores, scene_of=np.zeros(n, np.int64), xyz=np.stack([10.0 * np.arange(n)] * 3, 1),
                features=feats, protos=np.array([[2.0, 0], [0, 3.0]]), candidate_fraction=1.0, radius=0.45)
    both = np.array([True, True])
    assert jopro_select(budget=3, present=both, **case).tolist() == [3, 2, 1]  # 3: cos 0.71 <= 0.8
    assert jopro_select(budget=6, present=both, **case).tolist() == [3, 2, 1, 5, 0, 4]
    only_a = np.array([True, False])  # B absent: its look-alikes are no longer suppressed
    assert jopro_select(budget=4, present=only_a, **case).tolist() == [3, 2, 1, 5]
    assert prototype_keep(feats[[2, 0]], np.array([[1.0, 0]]), 0.999).tolist() == [True, True]


def test_candidates_are_per_scene() -> None:
    scores = np.concatenate([np.arange(10.0), 100 + np.arange(10.0)])
    scene = np.repeat([7, 3], 10)
    xyz = np.stack([np.arange(20.0) * 10, np.zeros(20), np.zeros(20)], 1)
    rows = jopro_select(scores, scene, xyz, np.ones((20, 2)), np.ones((1, 2)), np.array([True]), 2,
                        candidate_fraction=0.1, tau=1.0)
    assert rows.tolist() == [0, 10]  # each scene's lowest 10%, although rows 1..9 score lower than 10


def test_selection_respects_the_budget_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    n = 20000
    args = (rng.random(n), rng.integers(0, 5, n), rng.random((n, 3)) * 20, rng.normal(size=(n, 8)),
            rng.normal(size=(4, 8)), np.array([True, True, False, True]))
    selectable = rng.random(n) < 0.8
    rows = jopro_select(*args, 300, selectable=selectable)
    assert len(rows) == 300 and len(np.unique(rows)) == 300 and selectable[rows].all()
    assert np.array_equal(rows, jopro_select(*args, 300, selectable=selectable))
    tiny = np.zeros(n, bool)
    tiny[[5, 9]] = True
    assert sorted(jopro_select(*args, 300, selectable=tiny).tolist()) == [5, 9]  # fewer than the budget
    assert len(jopro_select(*args, 0)) == 0
    with pytest.raises(PcalError):
        jopro_select(*args, -1)
    with pytest.raises(PcalError):
        jopro_select(*args, 10, radius=-1.0)


def test_nan_scores_rank_last() -> None:
    case = _line_case([0.0, 5.0, 10.0], [np.nan, 0.5, 0.1])
    assert jopro_select(budget=3, radius=0.45, **case).tolist() == [2, 1, 0]


# ---------------------------------------------------------------- contrastive regulariser


def _clustered(p: int = 240, d: int = 16, c: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(c, d, generator=g), dim=1)
    y = torch.arange(p) % c
    feats = centres[y] + 0.05 * torch.randn(p, d, generator=g)
    probs = torch.full((p, c), 0.02)
    probs[torch.arange(p), y] = 1 - 0.02 * (c - 1)
    return feats, probs, centres, y


def test_contrastive_loss_is_finite_and_reaches_only_the_student() -> None:
    feats, probs, centres, _ = _clustered()
    student = (feats + 0.1 * torch.randn(feats.shape, generator=torch.Generator().manual_seed(3))).requires_grad_()
    teacher = feats.clone().requires_grad_()
    probs = probs.clone().requires_grad_()
    subprotos = centres[:, None, :].repeat(1, 2, 1).clone().requires_grad_()
    loss, parts = hybrid_contrastive_loss(student, teacher, probs, subprotos,
                                          generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and parts["confident"] == 240
    assert all(parts[k] > 0 for k in ("align", "point", "proto"))
    assert float(loss.detach()) == pytest.approx(0.1 * (parts["align"] + parts["point"] + parts["proto"]), rel=1e-5)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None and probs.grad is None and subprotos.grad is None


def test_contrastive_loss_is_zero_without_confident_points() -> None:
    student = torch.randn(50, 8, requires_grad=True)
    probs = torch.full((50, 4), 0.25)
    loss, parts = hybrid_contrastive_loss(student, torch.randn(50, 8), probs, torch.randn(4, 3, 8), conf=0.8)
    assert float(loss.detach()) == 0 and parts["point"] == 0 and parts["confident"] == 0
    loss.backward()
    assert torch.equal(student.grad, torch.zeros_like(student))


def test_contrastive_terms_prefer_features_clustered_by_pseudo_label() -> None:
    feats, probs, centres, y = _clustered()
    subprotos = centres[:, None, :].repeat(1, 2, 1)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    _, good = hybrid_contrastive_loss(feats, feats, probs, subprotos, generator=gen())
    shuffled = probs[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
    _, bad = hybrid_contrastive_loss(feats, feats, shuffled, subprotos, generator=gen())
    assert good["point"] < bad["point"] - 1 and good["proto"] < bad["proto"] - 1
    assert good["align"] == pytest.approx(0, abs=1e-6)
    empty = torch.zeros(4, 2, 16)  # never-initialised sub-prototypes: no proto term, no NaN
    loss, parts = hybrid_contrastive_loss(feats, feats, probs, empty)
    assert parts["proto"] == 0 and torch.isfinite(loss)


def test_subprototypes_move_towards_the_data_and_save_as_plain_tensors() -> None:
    g = torch.Generator().manual_seed(0)
    dirs = torch.eye(6)[:3]  # class 0: three tight clusters
    feats = dirs.repeat_interleave(30, 0) + 0.01 * torch.randn(90, 6, generator=g)
    probs = torch.tensor([[0.95, 0.05]]).repeat(90, 1)
    sub = SubPrototypes(2, 6, per_class=3, seed=0)
    assert sub.update(feats, probs, conf=0.8) == 1
    assert sub.initialised.tolist() == [True, False] and torch.equal(sub.centres[1], torch.zeros(3, 6))
    cos = sub.centres[0] @ dirs.T
    assert sorted(cos.argmax(dim=1).tolist()) == [0, 1, 2] and cos.max(dim=1).values.min() > 0.99
    target = torch.nn.functional.normalize(dirs + 0.5 * torch.eye(6)[3], dim=1)
    moved = target.repeat_interleave(30, 0)
    before = (sub.centres[0] * target[cos.argmax(dim=1)]).sum(1)
    sub.update(moved, probs, conf=0.8, momentum=0.5)
    after = (sub.centres[0] * target[cos.argmax(dim=1)]).sum(1)
    assert (after > before + 0.01).all()
    assert torch.allclose(sub.centres[0].norm(dim=1), torch.ones(3))
    buffer = io.BytesIO()
    torch.save(sub.state_dict(), buffer)
    buffer.seek(0)
    fresh = SubPrototypes(2, 6, per_class=3, seed=0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(fresh.centres, sub.centres) and int(fresh.updates) == 2
    twin = SubPrototypes(2, 6, per_class=3, seed=0)
    twin.update(feats, probs, conf=0.8)
    twin.update(moved, probs, conf=0.8, momentum=0.5)
    assert torch.equal(twin.centres, sub.centres)


def test_split_budget_sums_to_the_round_and_follows_the_pools():
    from pcal_cli.selection.budget import split_budget

    assert split_budget(10, [100, 100, 200]) == [3, 2, 5]  # remainders 0.5/0.5: the lower index first
    assert sum(split_budget(101, [7, 13, 29, 51])) == 101
    assert split_budget(0, [1, 2]) == [0, 0] and split_budget(5, [0, 0]) == [0, 0]


def test_jopro_per_scene_budgets_take_each_scenes_share():
    rng = np.random.default_rng(0)
    n = 60
    scene_of = np.repeat([0, 1, 2], 20)
    xyz = rng.random((n, 3)) * 10
    features = rng.normal(size=(n, 4))
    scores = np.r_[np.linspace(0, 1, 20), np.linspace(2, 3, 20), np.linspace(4, 5, 20)]  # scene 0 scores best
    protos, present = np.eye(4)[:2], np.array([True, True])
    glob = jopro_select(scores, scene_of, xyz, features, protos, present, 6, candidate_fraction=1.0, tau=1.0)
    assert set(scene_of[glob]) == {0}  # one global ranking: the best scene takes everything
    shares = {0: 2, 1: 2, 2: 2}
    split = jopro_select(scores, scene_of, xyz, features, protos, present, 6, candidate_fraction=1.0, tau=1.0,
                         scene_budgets=shares)
    assert np.bincount(scene_of[split], minlength=3).tolist() == [2, 2, 2]
    with pytest.raises(PcalError, match="sum to"):
        jopro_select(scores, scene_of, xyz, features, protos, present, 5, scene_budgets=shares)


def test_scene_candidates_limit_suppression_to_the_best_rows():
    scores = np.array([0.0, 1.0, 2.0])  # low first: row 0 best
    scene_of = np.zeros(3, dtype=np.int64)
    xyz = np.array([[0.0, 0, 0], [5.0, 0, 0], [10.0, 0, 0]])
    features = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # rows 0 and 1 share prototype 0
    protos, present = np.eye(2), np.array([True, True])
    every = jopro_select(scores, scene_of, xyz, features, protos, present, 2, candidate_fraction=1.0, radius=0.0)
    assert every.tolist() == [0, 2]  # all three are candidates: row 1 is suppressed by row 0
    two = jopro_select(scores, scene_of, xyz, features, protos, present, 2, candidate_fraction=1.0, radius=0.0,
                       scene_candidates=np.array([2]))
    assert two.tolist() == [0, 1]  # candidates 0 and 1 (1 suppressed), then the best other point fills
    with pytest.raises(PcalError, match="scene_candidates"):
        jopro_select(scores, np.array([0, 0, 1]), xyz, features, protos, present, 2, scene_candidates=np.array([2]))
