"""The one voxeliser: every point in its cell, cells once each, lexicographic, packed or not."""

import numpy as np

from pcal_cli.geometry import voxels
from pcal_cli.geometry.voxels import voxel_grid


def test_cells_inverse_and_first_agree_with_floor():
    xyz = np.random.default_rng(0).uniform(-3, 5, size=(2000, 3))
    cells, first, inverse = voxel_grid(xyz, 0.5)
    expected = np.floor(xyz / 0.5).astype(np.int64)
    assert np.array_equal(cells[inverse], expected)
    assert np.array_equal(cells, expected[first])
    assert len(np.unique(cells, axis=0)) == len(cells)
    assert np.array_equal(cells, np.unique(expected, axis=0))  # lexicographic (x, y, z) order


def test_per_axis_sizes_and_other_dimensions():
    xyz = np.random.default_rng(1).uniform(0, 10, size=(500, 4))
    size = np.array([1.0, 2.0, 0.5, 5.0])
    cells, _, inverse = voxel_grid(xyz, size)
    assert cells.shape[1] == 4
    assert np.array_equal(cells[inverse], np.floor(xyz / size).astype(np.int64))


def test_grid_too_large_to_pack_gives_the_same_result(monkeypatch):
    xyz = np.random.default_rng(2).uniform(-50, 50, size=(1000, 3))
    packed = voxel_grid(xyz, 0.3)
    monkeypatch.setattr(voxels, "KEY_LIMIT", 1)
    ranked = voxel_grid(xyz, 0.3)
    for a, b in zip(packed, ranked):
        assert np.array_equal(a, b)


def test_empty_input():
    cells, first, inverse = voxel_grid(np.zeros((0, 3)), 0.1)
    assert cells.shape == (0, 3) and first.size == 0 and inverse.size == 0
