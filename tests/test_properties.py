"""Property-based tests (hypothesis): PLY round trips, budget parsing, selector invariants.

Every selector promises (pcal_cli/selection/__init__.py): never more than the budget, never a unit
of cost 0, no row twice, the same output for the same input. The PLY writer promises that what is
written is what is read: integers exactly, coordinates exactly in their own frame, and absolute
coordinates (xyz + offset) to float32 precision of the scene's extent, never of its offset.
"""

from __future__ import annotations

import tempfile
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcal_cli.data.ply import read_ply, write_ply
from pcal_cli.data.scene import Scene
from pcal_cli.errors import PcalError
from pcal_cli.selection.budget import parse_budget
from pcal_cli.selection.diversity import diversity_select
from pcal_cli.selection.fds import fds_select
from pcal_cli.selection.kcenter import kcenter_greedy
from pcal_cli.selection.topk import select_topk

FAST = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
GEO = 1e4  # read_ply re-splits coordinates above this into an integer offset


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- PLY round trip --------------------------------------------------------------------------------
@st.composite
def scenes(draw) -> Scene:
    n = draw(st.integers(1, 200))
    rng = _rng(draw(st.integers(0, 2**32 - 1)))
    frame = draw(st.sampled_from(["local", "offset", "absolute", "offset+absolute"]))
    # local coordinates of a room or a tile; "absolute" are georeferenced values stored raw in float32
    extent = draw(st.sampled_from([1.0, 50.0, 1000.0]))
    xyz = rng.uniform(-extent, extent, size=(n, 3))
    if "absolute" in frame:
        xyz = xyz + np.array([draw(st.sampled_from([6.5e6, 4.2e6, -3.0e5, 2.0e4])),
                              draw(st.sampled_from([6.5e6, 5.0e5, 1.5e4])), draw(st.sampled_from([0.0, 2.0e4]))])
    offset = np.zeros(3)
    if "offset" in frame:
        offset = np.array([draw(st.sampled_from([6_500_000.0, 500_000.0, -250_000.0, 0.0])),
                           float(draw(st.integers(-10_000_000, 10_000_000))), float(draw(st.integers(-500, 5000)))])
    rgb = rng.integers(0, 256, size=(n, 3), dtype=np.uint8) if draw(st.booleans()) else None
    intensity = None
    if draw(st.booleans()):
        intensity = rng.normal(0, draw(st.sampled_from([1.0, 1e3, 1e30])), size=n).astype(np.float32)
    label = rng.integers(-1, 41, size=n).astype(np.int16)
    region = rng.integers(-1, 51, size=n).astype(np.int32)
    return Scene(name="scan", xyz=xyz.astype(np.float32), label=label, rgb=rgb, intensity=intensity,
                 region=region, offset=offset)


@FAST
@given(scene=scenes())
def test_ply_round_trip(scene):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scan.ply"
        write_ply(path, scene)
        back = read_ply(path)
    assert len(back) == len(scene) and back.name == "scan"
    assert back.label.dtype == np.int16 and back.region.dtype == np.int32 and back.xyz.dtype == np.float32
    np.testing.assert_array_equal(back.label, scene.label)
    np.testing.assert_array_equal(back.region, scene.region)
    assert (back.rgb is None) == (scene.rgb is None)
    if scene.rgb is not None:
        assert back.rgb.dtype == np.uint8
        np.testing.assert_array_equal(back.rgb, scene.rgb)
    assert (back.intensity is None) == (scene.intensity is None)
    if scene.intensity is not None:
        np.testing.assert_array_equal(back.intensity, scene.intensity)

    written = scene.xyz.astype(np.float64) + scene.offset
    absolute = back.xyz.astype(np.float64) + back.offset
    if np.abs(scene.xyz).max() <= GEO:
        # local coordinates: the same float32 values and the same offset, exactly
        np.testing.assert_array_equal(back.xyz, scene.xyz)
        np.testing.assert_array_equal(back.offset, scene.offset)
    else:
        # georeferenced values: re-split into an integer-metre offset and small remainders, so the
        # precision is float32's at the scene's extent (centimetres kept), not at its offset
        extra = back.offset - scene.offset
        np.testing.assert_array_equal(extra, np.floor(extra))
        assert back.xyz.min(axis=0).min() >= 0.0 and (back.xyz.min(axis=0) <= 1.0).all()
        span = float(np.abs(back.xyz).max())
        assert span <= float(np.ptp(scene.xyz.astype(np.float64), axis=0).max()) + 1.0
        tolerance = float(np.spacing(np.float32(span))) + 1e-9 * float(np.abs(written).max())
        assert np.abs(absolute - written).max() <= tolerance
    # a second round trip is the identity
    with tempfile.TemporaryDirectory() as folder:
        write_ply(Path(folder) / "again.ply", back)
        again = read_ply(Path(folder) / "again.ply")
    np.testing.assert_array_equal(again.xyz, back.xyz)
    np.testing.assert_array_equal(again.offset, back.offset)


# -- budgets -----------------------------------------------------------------------------------------
percents = st.one_of(
    st.integers(1, 100).map(Decimal),
    st.decimals(min_value=Decimal("0.001"), max_value=Decimal(100), places=3, allow_nan=False, allow_infinity=False),
)


@FAST
@given(value=percents, spaces=st.sampled_from(["", " ", "  "]), total=st.integers(0, 10**12))
def test_percent_budgets_parse_and_stay_within_the_split(value, spaces, total):
    text = f"{spaces}{value}{spaces}%{spaces}"
    budget = parse_budget(text)
    assert budget.kind == "percent" and Decimal(budget.value) == value
    points = budget.points(total)
    assert 0 <= points <= total
    assert points == int(Fraction(total) * Fraction(value) / 100)  # rounded down
    assert parse_budget(str(budget)) == budget  # the canonical form reads back


@FAST
@given(value=st.integers(1, 10**15), total=st.integers(0, 10**15), per_scene=st.booleans(),
       suffix=st.sampled_from(["/scene", "/scenes", " / scene", "/SCENE"]))
def test_point_and_per_scene_budgets(value, total, per_scene, suffix):
    if per_scene:
        budget = parse_budget(f"{value}{suffix}")
        assert budget.kind == "per_scene" and budget.units_per_scene == value
        with pytest.raises(PcalError):
            budget.points(total)
        return
    budget = parse_budget(f"{value:_}" if value % 2 else str(value))
    assert budget.kind == "points" and budget.value == value
    if value <= total:
        assert budget.points(total) == value
    else:
        with pytest.raises(PcalError, match="exceeds"):
            budget.points(total)


garbage = st.one_of(
    st.text(max_size=30),
    st.text(alphabet="0123456789.%/-+eE _scenSCEN\t\n", max_size=20),
    st.sampled_from(["", "%", "0%", "-3%", "101%", "100.0001%", "nan%", "inf%", "1e3", "3%%", "0", "-5",
                     "0/scene", "/scene", "3/", "3/region", "3 %/scene", "½%", "3,5%", "0x10", "1.5", "∞"]),
    st.text(alphabet="0123456789", min_size=1, max_size=12).map(lambda d: d + "%%"),
)


def _parse_or_pcal_error(text: str) -> None:
    try:
        budget = parse_budget(text)
    except PcalError:
        return
    # whatever parses is one of the three kinds, with a positive value
    assert budget.kind in ("percent", "points", "per_scene") and budget.value > 0


@FAST
@given(text=garbage)
def test_garbage_budgets_raise_pcal_error_only(text):
    _parse_or_pcal_error(text)


@pytest.mark.parametrize("text", ["9" * 4301, "9" * 4301 + "/scene", "1" + "0" * 5000 + "%"],
                         ids=["4301-digit points", "4301-digit per-scene", "5001-digit percent"])
def test_huge_numbers_in_budgets_raise_pcal_error_only(text):
    """Python refuses int() of more than 4300 digits with ValueError; a budget must say PcalError."""
    _parse_or_pcal_error(text)


# -- selectors ---------------------------------------------------------------------------------------
@st.composite
def pools(draw, max_units: int = 300):
    """Scores (ties, NaN, negatives), costs (with zeros) and a budget."""
    rng = _rng(draw(st.integers(0, 2**32 - 1)))
    units = draw(st.integers(0, max_units))
    kind = draw(st.sampled_from(["continuous", "ties", "nan"]))
    scores = rng.normal(size=units)
    if kind == "ties":
        scores = rng.integers(0, 3, size=units).astype(np.float64)
    elif kind == "nan":
        scores[rng.random(units) < 0.2] = np.nan
    costs = rng.integers(0, draw(st.sampled_from([2, 10, 200])), size=units)
    costs[rng.random(units) < draw(st.sampled_from([0.0, 0.3]))] = 0
    budget = draw(st.integers(0, max(int(costs.sum()) + 5, 1)))
    return scores, costs.astype(np.int64), budget, rng


def _check_selection(chosen: np.ndarray, costs: np.ndarray, budget: int) -> None:
    chosen = np.asarray(chosen)
    assert chosen.ndim == 1 and np.issubdtype(chosen.dtype, np.integer)
    assert len(np.unique(chosen)) == len(chosen), "a unit chosen twice"
    assert ((chosen >= 0) & (chosen < len(costs))).all()
    assert (costs[chosen] > 0).all(), "a unit of cost 0 chosen"
    assert int(costs[chosen].sum()) <= budget, "over budget"


def _reference_walk(rank: np.ndarray, costs: np.ndarray, budget: int) -> list[int]:
    """The documented policy, row by row: take what fits, skip what does not, continue."""
    left, taken = budget, []
    for row in rank:
        if 0 < costs[row] <= left:
            taken.append(int(row))
            left -= int(costs[row])
    return taken


@FAST
@given(pool=pools(), use_order=st.booleans())
def test_topk_invariants(pool, use_order):
    scores, costs, budget, rng = pool
    order = None
    if use_order:
        order = rng.permutation(len(scores))[: rng.integers(0, len(scores) + 1)]
    chosen = select_topk(scores, costs, budget, order=order)
    _check_selection(chosen, costs, budget)
    np.testing.assert_array_equal(chosen, select_topk(scores.copy(), costs.copy(), budget, order=order))
    if order is None:
        # descending score, ties by row, NaN last
        rank = sorted(range(len(scores)), key=lambda i: (np.isnan(scores[i]), -np.nan_to_num(scores[i]), i))
    else:
        rank = list(order)
    assert chosen.tolist() == _reference_walk(np.asarray(rank, dtype=np.int64), costs, budget)


@SLOW
@given(seed=st.integers(0, 2**32 - 1), units=st.integers(2049, 6000), spread=st.sampled_from([1, 5, 100]))
def test_topk_vectorised_walk_equals_the_row_by_row_policy(seed, units, spread):
    rng = _rng(seed)
    scores = rng.integers(0, 50, size=units).astype(np.float64)
    costs = rng.integers(0, spread + 1, size=units)
    budget = int(rng.integers(0, costs.sum() + 2))
    chosen = select_topk(scores, costs, budget)
    _check_selection(chosen, costs, budget)
    rank = np.argsort(-scores, kind="stable")
    assert chosen.tolist() == _reference_walk(rank, costs, budget)


@FAST
@given(pool=pools(max_units=200), dims=st.integers(1, 6), labelled=st.integers(0, 20),
       max_candidates=st.sampled_from([3, 50, 20000]), seed=st.integers(0, 1000))
def test_kcenter_invariants(pool, dims, labelled, max_candidates, seed):
    scores, costs, budget, rng = pool
    features = rng.normal(size=(len(costs), dims)).astype(np.float32)
    if len(costs) > 3:
        features[: len(costs) // 3] = features[0]  # duplicates: distance ties
    known = rng.normal(size=(labelled, dims)).astype(np.float32) if labelled else None
    chosen = kcenter_greedy(features, costs, budget, known, rng=seed, max_candidates=max_candidates)
    _check_selection(chosen, costs, budget)
    again = kcenter_greedy(features.copy(), costs.copy(), budget, None if known is None else known.copy(), rng=seed,
                           max_candidates=max_candidates)
    np.testing.assert_array_equal(chosen, again)


@SLOW
@given(pool=pools(max_units=60), dims=st.integers(1, 4), clusters=st.integers(1, 12),
       decay=st.sampled_from([0.5, 0.95, 1.0]), trim=st.sampled_from([None, 0.1, 0.5, 1.0]), seed=st.integers(0, 99))
def test_diversity_invariants(pool, dims, clusters, decay, trim, seed):
    scores, costs, budget, rng = pool
    scores = np.abs(np.nan_to_num(scores))  # the decay is meant for non-negative scores
    features = rng.normal(size=(len(costs), dims)).astype(np.float32)
    if len(costs) > 4:
        features[::4] = features[0]
    chosen = diversity_select(scores, costs, features, budget, clusters=clusters, decay=decay, trim=trim, seed=seed)
    _check_selection(chosen, costs, budget)
    again = diversity_select(scores.copy(), costs.copy(), features.copy(), budget, clusters=clusters, decay=decay,
                             trim=trim, seed=seed)
    np.testing.assert_array_equal(chosen, again)
    if decay == 1.0 and trim is None:  # no decay: plain top-k
        np.testing.assert_array_equal(chosen, select_topk(scores, costs, budget))


def _fds_reference(order, scene_of, xyz, features, budget, radius, tau) -> list[int]:
    """The rule of pcal_cli/selection/fds.py, row by row: suppress a row when an accepted row of
    the same scene is strictly within ``radius`` and has a cosine strictly above ``tau``."""
    f = features.astype(np.float32)
    norm = np.sqrt(np.einsum("ij,ij->i", f, f))
    live = np.isfinite(norm) & (norm > 0)
    unit = np.where(live[:, None], f / np.where(live, norm, 1.0)[:, None], 0.0).astype(np.float32)
    pos = xyz.astype(np.float64)
    accepted: list[int] = []
    for row in order:
        if len(accepted) >= budget:
            break
        acc = np.asarray(accepted, dtype=np.int64)
        near = (scene_of[acc] == scene_of[row]) & live[acc] & live[row]
        near &= np.square(pos[acc] - pos[row]).sum(axis=1) < radius * radius
        similar = np.einsum("ij,ij->i", unit[acc[near]], np.repeat(unit[[row]], int(near.sum()), axis=0)) > tau
        if not similar.any():
            accepted.append(int(row))
    return accepted


@st.composite
def fds_inputs(draw, max_rows: int = 250):
    rng = _rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(0, max_rows))
    grid = draw(st.sampled_from([0.05, 0.1, 0.25]))
    # coordinates on a grid (many pairs exactly at the radius) or continuous
    if draw(st.booleans()):
        xyz = rng.integers(0, draw(st.sampled_from([3, 8, 20])), size=(n, 3)) * grid
    else:
        xyz = rng.uniform(0, draw(st.sampled_from([0.5, 2.0])), size=(n, 3))
    prototypes = rng.normal(size=(draw(st.integers(1, 4)), draw(st.integers(1, 5))))
    features = prototypes[rng.integers(0, len(prototypes), size=n)] + rng.normal(
        scale=draw(st.sampled_from([0.0, 0.05, 1.0])), size=(n, prototypes.shape[1]))
    features[rng.random(n) < 0.05] = 0.0  # zero features: never similar
    scene_of = rng.integers(0, draw(st.integers(1, 3)), size=n)
    order = rng.permutation(n)[: draw(st.integers(0, n))] if n else np.zeros(0, dtype=np.int64)
    budget = draw(st.integers(0, n + 2))
    radius = draw(st.sampled_from([0.05, 0.1, 0.2, 0.25, 0.5, 1.0]))
    tau = draw(st.sampled_from([-1.0, 0.0, 0.5, 0.8, 0.95]))
    return order, scene_of, xyz.astype(np.float32), features.astype(np.float32), budget, radius, tau


@FAST
@given(inputs=fds_inputs())
def test_fds_invariants_and_rule(inputs):
    order, scene_of, xyz, features, budget, radius, tau = inputs
    chosen = fds_select(order, scene_of, xyz, features, budget, radius=radius, tau=tau)
    assert len(chosen) <= budget and len(np.unique(chosen)) == len(chosen)
    assert set(chosen.tolist()) <= set(np.asarray(order).tolist())
    np.testing.assert_array_equal(chosen, fds_select(order.copy(), scene_of.copy(), xyz.copy(), features.copy(),
                                                     budget, radius=radius, tau=tau))
    assert chosen.tolist() == _fds_reference(order, scene_of, xyz, features, budget, radius, tau)


@settings(max_examples=4, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), tau=st.sampled_from([0.0, 0.8]))
def test_fds_across_chunks_equals_the_sequential_rule(seed, tau):
    """More rows than one chunk (4096): rows accepted in earlier chunks suppress later ones."""
    rng = _rng(seed)
    n = 5000
    xyz = (rng.integers(0, 12, size=(n, 3)) * 0.1).astype(np.float32)
    features = rng.normal(size=(3, 4))[rng.integers(0, 3, size=n)].astype(np.float32)
    scene_of = rng.integers(0, 2, size=n)
    order = rng.permutation(n)
    budget = int(rng.integers(1000, n))
    chosen = fds_select(order, scene_of, xyz, features, budget, radius=0.2, tau=tau)
    assert len(np.unique(chosen)) == len(chosen) <= budget
    assert chosen.tolist() == _fds_reference(order, scene_of, xyz, features, budget, 0.2, tau)
