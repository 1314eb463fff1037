import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from pcal_cli.data.ply import ply_channels, read_ply, write_ply
from pcal_cli.data.scene import Scene, split_offset
from pcal_cli.errors import PcalError


def _scene(n=50, seed=0, rgb=True, intensity=False):
    rng = np.random.default_rng(seed)
    return Scene(
        name="s",
        xyz=rng.random((n, 3)).astype(np.float32),
        label=rng.integers(-1, 5, n),
        rgb=rng.integers(0, 256, (n, 3)) if rgb else None,
        intensity=rng.random(n) if intensity else None,
        region=rng.integers(0, 7, n),
    )


def test_roundtrip_keeps_every_field(tmp_path):
    scene = _scene(intensity=True)
    write_ply(tmp_path / "a.ply", scene)
    back = read_ply(tmp_path / "a.ply")
    np.testing.assert_array_equal(back.xyz, scene.xyz)
    np.testing.assert_array_equal(back.rgb, scene.rgb)
    np.testing.assert_array_equal(back.intensity, scene.intensity)
    np.testing.assert_array_equal(back.label, scene.label)
    np.testing.assert_array_equal(back.region, scene.region)
    assert back.label.dtype == np.int16 and back.region.dtype == np.int32


def test_written_format_is_binary_little_endian_with_expected_types(tmp_path):
    write_ply(tmp_path / "a.ply", _scene())
    ply = PlyData.read(str(tmp_path / "a.ply"))
    assert not ply.text and ply.byte_order == "<"
    types = {p.name: p.val_dtype for p in ply["vertex"].properties}
    assert types == {"x": "f4", "y": "f4", "z": "f4", "red": "u1", "green": "u1", "blue": "u1",
                     "label": "i2", "region": "i4"}


def test_same_scene_gives_identical_bytes(tmp_path):
    write_ply(tmp_path / "a.ply", _scene())
    write_ply(tmp_path / "b.ply", _scene())
    assert (tmp_path / "a.ply").read_bytes() == (tmp_path / "b.ply").read_bytes()
    assert not list(tmp_path.glob(".*tmp"))


def test_foreign_ply_float_colors_double_coords_extra_fields(tmp_path):
    n = 20
    data = np.zeros(n, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("red", "f4"), ("green", "f4"),
                              ("blue", "f4"), ("scalar_Classification", "f4"), ("nx", "f4")])
    data["x"] = 652000.25 + np.arange(n) * 0.01
    data["y"] = 6862000.75
    data["z"] = 10.5
    data["red"] = 1.0
    data["green"] = 0.5
    data["scalar_Classification"] = 2.0
    PlyData([PlyElement.describe(data, "vertex")], text=True).write(str(tmp_path / "cc.ply"))
    scene = read_ply(tmp_path / "cc.ply")
    assert scene.rgb[0].tolist() == [255, 128, 0]
    assert set(scene.label.tolist()) == {2}
    absolute = scene.xyz.astype(np.float64) + scene.offset
    np.testing.assert_allclose(absolute[:, 0], data["x"], atol=1e-4)  # centimetres survive float32
    np.testing.assert_allclose(absolute[:, 1], data["y"], atol=1e-4)


def test_offset_survives_write_and_read(tmp_path):
    xyz, offset = split_offset(np.array([[500000.5, 6000000.25, 3.0], [500001.0, 6000001.0, 4.0]]))
    write_ply(tmp_path / "o.ply", Scene(name="o", xyz=xyz, offset=offset))
    back = read_ply(tmp_path / "o.ply")
    np.testing.assert_allclose(back.xyz + back.offset, [[500000.5, 6000000.25, 3.0], [500001.0, 6000001.0, 4.0]])


def test_explicit_label_field(tmp_path):
    data = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("cls", "u1")])
    data["cls"] = [1, 2, 3]
    PlyData([PlyElement.describe(data, "vertex")]).write(str(tmp_path / "l.ply"))
    assert read_ply(tmp_path / "l.ply", label_field="cls").label.tolist() == [1, 2, 3]
    with pytest.raises(PcalError, match="no field 'nope'"):
        read_ply(tmp_path / "l.ply", label_field="nope")


def test_truncated_ply_is_a_clear_error(tmp_path):
    write_ply(tmp_path / "a.ply", _scene(n=1000))
    blob = (tmp_path / "a.ply").read_bytes()
    (tmp_path / "t.ply").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(PcalError, match="not a readable PLY"):
        read_ply(tmp_path / "t.ply")


def test_ply_without_xyz_is_a_clear_error(tmp_path):
    data = np.zeros(3, dtype=[("a", "f4"), ("b", "f4")])
    PlyData([PlyElement.describe(data, "vertex")]).write(str(tmp_path / "n.ply"))
    with pytest.raises(PcalError, match="no x/y/z"):
        read_ply(tmp_path / "n.ply")


def test_not_a_ply_is_a_clear_error(tmp_path):
    (tmp_path / "x.ply").write_text("hello\n")
    with pytest.raises(PcalError, match="not a readable PLY"):
        read_ply(tmp_path / "x.ply")


def test_nir_is_stored_as_a_float_property_and_read_back(tmp_path):
    scene = _scene(intensity=True)
    scene.nir = np.linspace(0, 4000, len(scene)).astype(np.float32)
    write_ply(tmp_path / "a.ply", scene)
    types = {p.name: p.val_dtype for p in PlyData.read(str(tmp_path / "a.ply"))["vertex"].properties}
    assert list(types)[6:] == ["intensity", "nir", "label", "region"] and types["nir"] == "f4"
    back = read_ply(tmp_path / "a.ply")
    np.testing.assert_array_equal(back.nir, scene.nir)
    np.testing.assert_array_equal(back.subset(np.arange(3)).nir, scene.nir[:3])
    assert ply_channels(tmp_path / "a.ply") == {"rgb", "intensity", "nir"}
    write_ply(tmp_path / "b.ply", _scene(rgb=False))
    assert read_ply(tmp_path / "b.ply").nir is None and ply_channels(tmp_path / "b.ply") == set()
