"""Labelling units and the geometry under them: grids, neighbours, normals, region builders."""

from __future__ import annotations

import numpy as np
import pytest

import pcal_cli.geometry.regions.kmeans as kmeans_module
from pcal_cli.data.synthetic import synthetic_room
from pcal_cli.errors import PcalError
from pcal_cli.geometry import (
    OUTDOOR,
    build_regions,
    estimate_normals,
    grid_cells,
    grid_subsample,
    kmeans_chunks,
    knn,
    supervoxels,
    voxel_keys,
)

# Observed on rooms 0 and 1 of seed 0 at 40k points (1.0 m / 0.1 m): 0.935 and 0.910, mean 0.922.
PURITY_THRESHOLD = 0.90


@pytest.fixture(scope="module")
def room():
    return synthetic_room(0, 40000, "room_000")


@pytest.fixture(scope="module")
def room_regions(room):
    return supervoxels(room.xyz, room.rgb)


def _purity(label: np.ndarray, region: np.ndarray) -> float:
    """Fraction of points carrying their region's majority label."""
    table = np.zeros((region.max() + 1, label.max() + 1), dtype=np.int64)
    np.add.at(table, (region, label), 1)
    return table.max(axis=1).sum() / len(label)


def _assert_contiguous(ids: np.ndarray, n: int) -> None:
    assert ids.dtype == np.int32 and ids.shape == (n,)
    assert ids.min() == 0
    np.testing.assert_array_equal(np.unique(ids), np.arange(ids.max() + 1))


def _plane(rng, n, x0, x1, y0=0.0, y1=2.0, z=0.0, noise=0.002):
    xyz = np.column_stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n), np.full(n, z)])
    return xyz + rng.normal(0, noise, (n, 3))


# ------------------------------------------------------------------------------ supervoxels


def test_supervoxels_cover_every_point_with_contiguous_ids(room, room_regions):
    _assert_contiguous(room_regions, len(room))
    assert room_regions.max() + 1 > 50  # a 40k-point room is not one region


def test_supervoxels_have_no_region_under_min_size(room, room_regions):
    assert np.bincount(room_regions).min() >= 100
    larger = supervoxels(room.xyz, room.rgb, min_size=400)
    _assert_contiguous(larger, len(room))
    assert np.bincount(larger).min() >= 400
    assert larger.max() < room_regions.max()


def test_supervoxels_are_deterministic(room, room_regions):
    np.testing.assert_array_equal(supervoxels(room.xyz, room.rgb), room_regions)
    permuted_input = room.xyz.copy()  # same values, new array: no hidden state
    np.testing.assert_array_equal(supervoxels(permuted_input, room.rgb.copy()), room_regions)


def test_supervoxel_purity_on_a_synthetic_room(room, room_regions):
    other = synthetic_room(0, 40000, "room_001")
    purity = np.mean([_purity(room.label, room_regions),
                      _purity(other.label, supervoxels(other.xyz, other.rgb))])
    assert purity > PURITY_THRESHOLD


def test_colour_and_normals_make_regions_purer(room, room_regions):
    plain = supervoxels(room.xyz, None, normal_weight=0.0)
    assert _purity(room.label, room_regions) > _purity(room.label, plain) + 0.02


def _blobs_sharing_a_region(xyz: np.ndarray, blob: np.ndarray, ids: np.ndarray) -> int:
    owners = np.zeros((ids.max() + 1, blob.max() + 1), dtype=bool)
    owners[ids, blob] = True
    return int((owners.sum(axis=1) > 1).sum())


def test_supervoxels_never_bridge_a_gap_wider_than_the_seed_resolution():
    rng = np.random.default_rng(1)
    # two strips 1.2 m apart with the same colour and orientation, and a blob 2 m above
    a = _plane(rng, 6000, 0.0, 2.6)
    b = _plane(rng, 1500, 3.8, 4.4)
    c = rng.normal([3.2, 1.0, 0.0], 0.03, (150, 3)) + [0, 0, 2.0]
    xyz = np.concatenate([a, b, c])
    blob = np.repeat([0, 1, 2], [len(a), len(b), len(c)])
    rgb = np.full((len(xyz), 3), 128, dtype=np.uint8)
    for ids in (supervoxels(xyz, rgb), supervoxels(xyz, None, iterations=1),
                supervoxels(xyz, rgb, seed_resolution=1.1, voxel_resolution=0.2)):
        _assert_contiguous(ids, len(xyz))
        assert _blobs_sharing_a_region(xyz, blob, ids) == 0


def test_supervoxels_split_clusters_at_gaps_narrower_than_the_seed_resolution():
    # a 0.5 m gap inside one 2 m seed cell: the k-means clusters straddle it, the connectivity
    # split (26-adjacent voxels) must cut them, as any gap of two voxels or more
    for seed in range(3):
        rng = np.random.default_rng(seed)
        a, b = _plane(rng, 6000, 0.0, 2.6), _plane(rng, 1500, 3.1, 3.7)
        xyz = np.concatenate([a, b])
        blob = np.repeat([0, 1], [len(a), len(b)])
        ids = supervoxels(xyz, None, seed_resolution=2.0, voxel_resolution=0.1)
        _assert_contiguous(ids, len(xyz))
        assert _blobs_sharing_a_region(xyz, blob, ids) == 0


def test_isolated_small_clusters_are_merged_not_dropped():
    # 20 tight clusters of 10 points, 5 m apart: each alone is under min_size
    centres = np.column_stack([np.arange(20) * 5.0, np.zeros(20), np.zeros(20)])
    xyz = np.repeat(centres, 10, axis=0) + np.random.default_rng(0).normal(0, 0.01, (200, 3))
    ids = supervoxels(xyz, min_size=30)
    _assert_contiguous(ids, len(xyz))
    sizes = np.bincount(ids)
    assert sizes.min() >= 30 and len(sizes) >= 3  # merged gradually, not all into one region
    # clusters are merged whole: the 10 points of a cluster share a region
    assert (ids.reshape(20, 10) == ids.reshape(20, 10)[:, :1]).all()


def test_a_scene_smaller_than_min_size_is_one_region():
    xyz = np.random.default_rng(0).random((60, 3)) * 5
    np.testing.assert_array_equal(supervoxels(xyz, min_size=100), np.zeros(60, dtype=np.int32))
    assert supervoxels(np.zeros((0, 3))).shape == (0,)


def test_supervoxels_accept_point_normals_and_float_colours(room):
    normals = estimate_normals(room.xyz, k=12)
    ids = supervoxels(room.xyz, room.rgb.astype(np.float32) / 255, normals=normals)
    _assert_contiguous(ids, len(room))
    assert _purity(room.label, ids) > PURITY_THRESHOLD - 0.03


def test_outdoor_preset_gives_larger_regions(room, room_regions):
    ids = supervoxels(room.xyz, room.rgb, preset="outdoor")
    _assert_contiguous(ids, len(room))
    assert ids.max() < room_regions.max() / 4
    assert OUTDOOR == {"seed_resolution": 10.0, "voxel_resolution": 0.5}


@pytest.mark.parametrize("kwargs", [
    {"voxel_resolution": 0}, {"seed_resolution": -1.0}, {"voxel_resolution": 2.0},
    {"min_size": -1}, {"color_weight": -0.1}, {"iterations": 0}, {"preset": "underwater"},
])
def test_supervoxels_reject_bad_parameters(kwargs):
    with pytest.raises(PcalError):
        supervoxels(np.random.default_rng(0).random((50, 3)), **kwargs)


def test_supervoxels_reject_mismatched_colours():
    with pytest.raises(PcalError):
        supervoxels(np.zeros((10, 3)), np.zeros((9, 3), dtype=np.uint8))


# ------------------------------------------------------------------------------ cells and k-means


def test_cells_match_a_hand_computation():
    xyz = np.array([
        [0.00, 0.00, 0.00],  # cell (0, 0, 0)
        [0.10, 0.10, 0.10],  # (0, 0, 0)
        [0.30, 0.00, 0.00],  # (1, 0, 0)
        [0.00, 0.30, 0.00],  # (0, 1, 0)
        [0.60, 0.60, 0.60],  # (2, 2, 2)
        [0.26, 0.01, 0.02],  # (1, 0, 0)
    ]) + 10.0  # cells are anchored at the minimum corner, not at the origin
    np.testing.assert_array_equal(grid_cells(xyz, cell=0.25), [0, 0, 2, 1, 3, 2])
    np.testing.assert_array_equal(grid_cells(xyz, cell=1.0), np.zeros(6))
    np.testing.assert_array_equal(voxel_keys(xyz, 0.25)[4], [2, 2, 2])


def test_cells_split_at_max_points_into_half_size_children():
    # one 1 m cell: 3 points near its low corner, 3 near its high corner, 1 point alone elsewhere
    xyz = np.array([[0.1, 0.1, 0.1], [0.2, 0.1, 0.1], [0.1, 0.2, 0.1],
                    [0.8, 0.8, 0.8], [0.9, 0.8, 0.8], [0.8, 0.9, 0.9], [1.5, 0.5, 0.5]])
    np.testing.assert_array_equal(grid_cells(xyz, cell=1.0), [0, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(grid_cells(xyz, cell=1.0, max_points=6), [0, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(grid_cells(xyz, cell=1.0, max_points=3), [0, 0, 0, 1, 1, 1, 2])
    deep = grid_cells(xyz, cell=1.0, max_points=2)
    assert np.bincount(deep).max() <= 2 and deep[-1] == deep.max()


def test_cells_cut_coincident_points_in_input_order():
    xyz = np.ones((10, 3))
    np.testing.assert_array_equal(grid_cells(xyz, max_points=3), [0, 0, 0, 1, 1, 1, 2, 2, 2, 3])


def test_cells_respect_the_cap_on_a_room(room):
    ids = grid_cells(room.xyz, cell=0.5, max_points=200)
    _assert_contiguous(ids, len(room))
    assert np.bincount(ids).max() <= 200
    assert ids.max() > grid_cells(room.xyz, cell=0.5).max()


def test_kmeans_is_deterministic_for_a_fixed_seed(room):
    a = kmeans_chunks(room.xyz, chunks=12, seed=3)
    _assert_contiguous(a, len(room))
    assert a.max() + 1 == 12
    np.testing.assert_array_equal(a, kmeans_chunks(room.xyz, chunks=12, seed=3))


def test_kmeans_subsample_path_is_deterministic(room, monkeypatch):
    monkeypatch.setattr(kmeans_module, "KMEANS_SAMPLE", 2000)
    a = kmeans_chunks(room.xyz, chunks=8, seed=1)
    _assert_contiguous(a, len(room))
    np.testing.assert_array_equal(a, kmeans_chunks(room.xyz, chunks=8, seed=1))


def test_kmeans_caps_chunks_at_distinct_points():
    xyz = np.repeat(np.eye(3), 4, axis=0)
    ids = kmeans_chunks(xyz, chunks=20)
    assert ids.max() + 1 == 3
    assert (ids.reshape(3, 4) == ids.reshape(3, 4)[:, :1]).all()


# ------------------------------------------------------------------------------ dispatch


def test_build_regions_dispatches_by_name(room):
    np.testing.assert_array_equal(build_regions("cells", room.xyz, cell=0.5), grid_cells(room.xyz, 0.5))
    np.testing.assert_array_equal(build_regions("kmeans", room.xyz, seed=2, chunks=5),
                                  kmeans_chunks(room.xyz, 5, seed=2))
    none = build_regions("none", room.xyz)
    assert none.dtype == np.int32 and (none == -1).all() and none.shape == (len(room),)
    small = room.subset(np.arange(5000))
    np.testing.assert_array_equal(build_regions("supervoxel", small.xyz, small.rgb, preset="indoor"),
                                  supervoxels(small.xyz, small.rgb))


def test_build_regions_rejects_unknown_kinds_and_options(room):
    with pytest.raises(PcalError, match="unknown region kind"):
        build_regions("voronoi", room.xyz)
    with pytest.raises(PcalError, match="unknown option"):
        build_regions("cells", room.xyz, size=0.5)
    with pytest.raises(PcalError):
        build_regions("cells", room.xyz, cell=-1)


# ------------------------------------------------------------------------------ grid, neighbours


def test_grid_subsample_keeps_one_point_per_cell(room):
    keep = grid_subsample(room.xyz, 0.25)
    assert (np.diff(keep) > 0).all()
    keys = voxel_keys(room.xyz, 0.25)
    kept = {tuple(k) for k in keys[keep]}
    assert len(kept) == len(keep) == len({tuple(k) for k in keys})
    np.testing.assert_array_equal(keep, grid_subsample(room.xyz, 0.25))


def test_grid_subsample_keeps_the_point_nearest_the_centroid():
    xyz = np.array([[0.0, 0, 0], [0.4, 0, 0], [0.2, 0, 0], [0.21, 0, 0], [1.75, 0, 0], [1.625, 0, 0]])
    # cell 0 centroid x = 0.2025 -> index 2; cell 3 (x in [1.5, 2.0)): centroid 1.6875 -> exact tie,
    # the earlier point in input order (index 4) wins
    np.testing.assert_array_equal(grid_subsample(xyz, 0.5), [2, 4])


def test_knn_returns_self_first_and_sorted_distances(room):
    dist, idx = knn(room.xyz[:2000], 6)
    assert idx.shape == (2000, 6)
    np.testing.assert_array_equal(idx[:, 0], np.arange(2000))
    assert (np.diff(dist, axis=1) >= 0).all()


def test_normals_of_a_plane_are_plus_minus_z():
    rng = np.random.default_rng(0)
    xyz = _plane(rng, 5000, 0, 3, 0, 3, z=1.5, noise=0.001)
    normals, variation = estimate_normals(xyz, k=16, return_variation=True, chunk=1000)
    assert normals.shape == (5000, 3) and normals.dtype == np.float32
    assert (np.abs(normals[:, 2]) > 0.99).all()
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    assert variation.max() < 0.01
    # a vertical plane x = 2: normals +-x
    wall = xyz[:, [2, 0, 1]]
    assert (np.abs(estimate_normals(wall)[:, 0]) > 0.99).all()
