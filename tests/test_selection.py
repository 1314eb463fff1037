"""Budgeted selection: top-k walk policy, k-center greedy, budget parsing, the registry."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

import pcal_cli.selection.topk as topk_module
from pcal_cli.errors import PcalError
from pcal_cli.jopro.select import jopro_select
from pcal_cli.selection import SELECTORS, diversity_select, fds_select, get_selector, kcenter_greedy, parse_budget, select_topk
from pcal_cli.selection.topk import rank_descending, walk_budget, walk_budget_loop


# ---------------------------------------------------------------- top-k


def test_skip_and_continue_fills_with_smaller_units() -> None:
    scores = np.array([3.0, 2.0, 1.0, 0.5])
    costs = np.array([5, 8, 2, 3])
    # take 0 (5, 4 left), skip 1 (8 > 4), take 2 (2, 2 left), skip 3 (3 > 2)
    assert select_topk(scores, costs, 9).tolist() == [0, 2]
    assert select_topk(scores, costs, 13).tolist() == [0, 1]  # exactly spent: stop
    assert select_topk(scores, costs, 0).tolist() == []


def test_units_of_cost_zero_are_never_taken() -> None:
    assert select_topk(np.array([9.0, 1.0]), np.array([0, 1]), 5).tolist() == [1]


def test_ties_follow_row_order() -> None:
    assert select_topk(np.ones(5), np.ones(5, np.int64), 3).tolist() == [0, 1, 2]
    scores = np.array([1.0, 2.0, 2.0, 1.0, 2.0])
    assert select_topk(scores, np.ones(5, np.int64), 4).tolist() == [1, 2, 4, 0]
    assert select_topk(scores, np.array([5, 0, 9, 1, 3]) > 0, 2).tolist() == [2, 4]  # units/scene
    assert rank_descending(np.array([np.nan, 1.0, 3.0])).tolist() == [2, 1, 0]  # NaN last
    many = np.random.default_rng(0).integers(0, 5, 3000).astype(np.float64)
    rows = np.arange(3000)
    expected = np.lexsort((rows, -many))[:1000]  # by score, then by row
    assert np.array_equal(select_topk(many, np.ones(3000, np.int64), 1000), expected)


@pytest.mark.parametrize("seed", range(5))
def test_never_exceeds_budget_and_matches_the_row_by_row_walk(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(seed)
    u = 6000
    scores = rng.integers(0, 50, u).astype(np.float64)  # many ties
    costs = rng.integers(0, 400, u) * (rng.random(u) < 0.9)
    budget = int(rng.integers(1, costs.sum() // 3))
    rank = rank_descending(scores)
    expected = walk_budget_loop(rank, costs, budget)
    for loop_rows in (1, 64, 100_000):  # all vectorised rounds, mixed, all row by row
        monkeypatch.setattr(topk_module, "LOOP_ROWS", loop_rows)
        selected = select_topk(scores, costs, budget)
        assert np.array_equal(selected, expected)
    assert costs[selected].sum() <= budget and (costs[selected] > 0).all()
    assert len(np.unique(selected)) == len(selected)


def test_uniform_costs_take_one_vectorised_step(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_loop(*args: object) -> np.ndarray:
        raise AssertionError("the uniform-cost case must not walk rows in Python")

    monkeypatch.setattr(topk_module, "walk_budget_loop", no_loop)
    scores = np.random.default_rng(0).random(200_000)
    selected = select_topk(scores, np.ones(200_000, np.int64), 2000)
    assert np.array_equal(selected, np.argsort(-scores, kind="stable")[:2000])
    assert len(walk_budget(np.arange(10_000), np.full(10_000, 3), 100)) == 33


def test_explicit_order_replaces_the_ranking() -> None:
    scores = np.array([5.0, 4.0, 3.0])
    costs = np.array([1, 1, 1])
    assert select_topk(scores, costs, 2, order=np.array([2, 0])).tolist() == [2, 0]
    for bad in (np.array([0, 0]), np.array([3]), np.array([[0]])):
        with pytest.raises(PcalError):
            select_topk(scores, costs, 2, order=bad)


@pytest.mark.parametrize("costs, budget", [([1, -1], 1), ([1, 1], -1), ([1.5, 1], 1), ([1], 1)])
def test_bad_costs_or_budget_are_user_errors(costs: list, budget: int) -> None:
    with pytest.raises(PcalError):
        select_topk(np.zeros(2), np.array(costs), budget)


# ---------------------------------------------------------------- k-center


def reference_kcenter(features: np.ndarray, costs: np.ndarray, budget: int,
                      labelled: np.ndarray) -> list[int]:
    """Plain loop version: farthest (then lowest row) candidate that fits, until nothing does."""
    left, picked = budget, []
    centres = [c for c in labelled]
    while True:
        best, best_d = -1, -1.0
        for i, f in enumerate(features):
            if i in picked or not 0 < costs[i] <= left:
                continue
            d = min(float(np.sum((f - c) ** 2)) for c in centres)
            if d > best_d:
                best, best_d = i, d
        if best < 0:
            return picked
        picked.append(best)
        centres.append(features[best])
        left -= costs[best]


def test_kcenter_picks_the_farthest_points_in_1d() -> None:
    features = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    labelled = np.array([[0.0]])
    assert kcenter_greedy(features, np.ones(5, np.int64), 2, labelled).tolist() == [4, 2]
    # unit 4 is too big for the budget: skipped, the next farthest ones fill it
    costs = np.array([1, 1, 1, 1, 5])
    assert kcenter_greedy(features, costs, 3, labelled).tolist() == [3, 2, 1]
    # unit 2 fits the budget at first, not after unit 4: skipped, then a tie at distance 1
    # between rows 1 and 3 goes to the lower row
    costs = np.array([1, 1, 2, 2, 2])
    assert kcenter_greedy(features, costs, 3, labelled).tolist() == [4, 1]


def test_kcenter_matches_a_loop_and_respects_the_budget() -> None:
    rng = np.random.default_rng(2)
    features = rng.normal(size=(60, 3))
    costs = rng.integers(0, 6, 60)
    labelled = rng.normal(size=(4, 3))
    selected = kcenter_greedy(features, costs, 40, labelled)
    assert selected.tolist() == reference_kcenter(features, costs, 40, labelled)
    assert costs[selected].sum() <= 40 and (costs[selected] > 0).all()


def test_kcenter_is_deterministic_per_seed() -> None:
    rng = np.random.default_rng(3)
    features = rng.normal(size=(2000, 8)).astype(np.float32)
    costs = rng.integers(1, 10, 2000)
    a = kcenter_greedy(features, costs, 200, None, np.random.default_rng(5), max_candidates=300)
    b = kcenter_greedy(features, costs, 200, None, np.random.default_rng(5), max_candidates=300)
    c = kcenter_greedy(features, costs, 200, None, np.random.default_rng(6), max_candidates=300)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert costs[a].sum() <= 200 and len(np.unique(a)) == len(a)


def test_kcenter_edge_cases() -> None:
    features = np.zeros((3, 2))
    assert kcenter_greedy(features, np.array([0, 0, 0]), 5).tolist() == []
    assert kcenter_greedy(features, np.array([9, 9, 9]), 5).tolist() == []
    with pytest.raises(PcalError):
        kcenter_greedy(features, np.ones(3, np.int64), 5, labelled_features=np.zeros((2, 3)))


# ---------------------------------------------------------------- budgets and registry


@pytest.mark.parametrize("text, kind, value", [
    ("3%", "percent", Decimal(3)), (" 0.5 % ", "percent", Decimal("0.5")),
    ("100%", "percent", Decimal(100)), ("20000", "points", 20000), ("20_000", "points", 20000),
    ("20/scene", "per_scene", 20),
])
def test_parse_good_budgets(text: str, kind: str, value: object) -> None:
    budget = parse_budget(text)
    assert (budget.kind, budget.value) == (kind, value)


@pytest.mark.parametrize("text", ["", "abc", "0", "-5", "0%", "-1%", "100.5%", "1e5", "3.5", "0/scene",
                                  "20/room", "nan%", "3%%"])
def test_parse_bad_budgets(text: str) -> None:
    with pytest.raises(PcalError) as info:
        parse_budget(text)
    assert "\n" not in str(info.value)


def test_budget_points() -> None:
    assert parse_budget("3%").points(1001) == 30  # rounded down
    assert parse_budget("29%").points(100) == 29  # exact decimals (0.29 * 100 in floats: 28.99...)
    assert parse_budget("20000").points(10**6) == 20000
    with pytest.raises(PcalError):
        parse_budget("20000").points(1000)
    with pytest.raises(PcalError):
        parse_budget("20/scene").points(10**6)
    assert parse_budget("20/scene").units_per_scene == 20


def test_selector_registry() -> None:
    assert {name: spec.select for name, spec in SELECTORS.items()} == {
        "topk": select_topk, "kcenter": kcenter_greedy, "diversity": diversity_select, "fds": fds_select,
        "jopro": jopro_select}
    assert get_selector(" TopK ").select is select_topk
    assert get_selector("diversity").needs_features and not get_selector("topk").needs_features
    assert get_selector("diversity").default_options(indoor=False)["clusters"] == "auto"
    assert get_selector("diversity").default_options(indoor=False)["trim"] == 0.1
    with pytest.raises(PcalError) as info:
        get_selector("badge")
    assert "diversity, fds, jopro, kcenter, topk" in str(info.value) and "\n" not in str(info.value)


def test_top_per_group_takes_the_best_of_each_group_with_ties_by_row() -> None:
    from pcal_cli.selection.topk import select_top_per_group

    scores = np.array([0.1, 0.9, 0.5, 0.5, 0.7, 0.2])
    groups = np.array([0, 0, 0, 1, 1, 1])
    assert select_top_per_group(scores, groups, 2).tolist() == [1, 2, 4, 3]
    assert select_top_per_group(np.array([1.0, 1.0]), np.array([3, 3]), 1).tolist() == [0]
    assert select_top_per_group(np.zeros(0), np.zeros(0, dtype=np.int64), 3).tolist() == []


def test_diversity_clusters_scale_with_the_pool_and_warn_when_too_many() -> None:
    from pcal_cli.selection.diversity import REGIONS_PER_CLUSTER, resolve_clusters

    assert resolve_clusters("auto", 22_000) == 400 and resolve_clusters("auto", 133) == 2
    assert resolve_clusters("auto", 10) == 1 and resolve_clusters("12", 1000) == 12
    with pytest.warns(UserWarning, match="decay never acts"):
        assert resolve_clusters(400, 133) == 400
    with pytest.raises(PcalError, match="clusters"):
        resolve_clusters("many", 10)
    assert REGIONS_PER_CLUSTER == 55


def test_diversity_overshoot_takes_the_crossing_region_only_when_asked() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    costs = np.array([50, 40, 30, 5])
    features = np.eye(4, dtype=np.float32)
    strict = diversity_select(scores, costs, features, 100, clusters=4, decay=1.0)
    assert strict.tolist() == [0, 1, 3] and costs[strict].sum() <= 100
    over = diversity_select(scores, costs, features, 100, clusters=4, decay=1.0, overshoot=True)
    assert over.tolist() == [0, 1, 2] and costs[over].sum() == 120  # crosses by part of one region


def test_a_parsed_budget_passes_through_and_prints_canonically():
    from pcal_cli.selection.budget import parse_budget, parse_schedule

    parsed = parse_budget("3.0%")
    assert parse_budget(parsed) is parsed
    assert str(parsed) == "3%"
    assert [str(b) for b in parse_schedule("0.5%, 1%,20/scene")] == ["0.5%", "1%", "20/scene"]


def test_small_budget_warning_gives_the_numbers_and_how_to_make_smaller_units():
    import warnings

    from pcal_cli.steps.select import _warn_small_budget

    costs = np.array([0, 200, 190, 210, 180, 200])
    with pytest.warns(UserWarning, match=r"1,000 points buys about 5\.0 regions .*median size \(200 points\).*"
                                         r"--seed-resolution"):
        _warn_small_budget(1000, costs, "region")
    with pytest.warns(UserWarning) as caught:
        _warn_small_budget(1000, costs, "cell")
    assert "--seed-resolution" not in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_small_budget(2000, costs, "region")  # ten median units: enough
        _warn_small_budget(10, costs, "point")  # points are never too large
