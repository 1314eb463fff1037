"""WSegPC building blocks: scene tags, the scene-tag loss, tag masking, pseudo-labels, cross-modal InfoNCE."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pcal_cli.errors import PcalError
from pcal_cli.weak import (
    CrossModalHeads,
    ImageFeatures,
    ProjectionHead,
    class_adaptive_threshold,
    crossmodal_batch_loss,
    crossmodal_infonce,
    mask_absent,
    mil_loss,
    pseudo_labels,
    read_point_features,
    read_tags_file,
    region_average,
    region_consistency_loss,
    scene_logits,
    structural_surfaces,
    tag_drop,
    tags_from_json,
    tags_from_labels,
    tags_per_point,
    tags_to_json,
    warmup_weight,
)

CLASSES = ["wall", "floor", "chair", "table", "sofa"]
SCENES = ["office_1", "office_2", "hallway_1", "001"]


def _vec(*names: str) -> np.ndarray:
    return np.array([c in names for c in CLASSES])


# ---------------------------------------------------------------- tags from labels


def test_tags_from_labels_ignores_negatives_and_checks_range() -> None:
    labels = np.array([2, 2, -1, 0, -100, 4, 0])
    assert tags_from_labels(labels, 5).tolist() == [True, False, True, False, True]
    assert tags_from_labels(np.full(3, -1), 5).tolist() == [False] * 5
    with pytest.raises(PcalError, match="label 5"):
        tags_from_labels(np.array([0, 5]), 5)
    with pytest.raises(PcalError, match="integers"):
        tags_from_labels(np.array([0.5]), 5)


# ---------------------------------------------------------------- MIL loss


def test_scene_logits_is_the_mean_per_scene_and_zero_for_empty_scenes() -> None:
    logits = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, -2.0]], requires_grad=True)
    out = scene_logits(logits, torch.tensor([0, 0, 2]), 3)
    assert torch.allclose(out, torch.tensor([[2.0, 3.0], [0.0, 0.0], [10.0, -2.0]]))
    out.sum().backward()
    assert torch.allclose(logits.grad, torch.tensor([[0.5, 0.5], [0.5, 0.5], [1.0, 1.0]]))
    with pytest.raises(PcalError, match="batch_index"):
        scene_logits(logits, torch.tensor([0, 1, 3]), 3)


def test_mil_loss_matches_hand_computed_soft_margin() -> None:
    z = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    y = torch.tensor([[True, False, True], [False, True, False]])
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    by_hand = 0.0
    for zr, yr in zip(z.tolist(), y.tolist()):
        by_hand += -sum(math.log(sig(v)) if t else math.log(sig(-v)) for v, t in zip(zr, yr)) / 3
    by_hand /= 2
    loss = mil_loss(z, y)
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    assert loss.item() == pytest.approx(F.multilabel_soft_margin_loss(z, y.float()).item(), rel=1e-6)


def test_mil_loss_prefers_logits_on_tagged_classes() -> None:
    g = torch.Generator().manual_seed(0)
    tags = torch.tensor([[True, False, True, False]])
    batch = torch.zeros(50, dtype=torch.long)
    noise = torch.randn(50, 4, generator=g)
    good = noise + 3.0 * (tags.float() * 2 - 1)  # points lean to the tagged classes
    bad = noise - 3.0 * (tags.float() * 2 - 1)
    good_loss = mil_loss(scene_logits(good, batch, 1), tags)
    bad_loss = mil_loss(scene_logits(bad, batch, 1), tags)
    assert good_loss < 0.2 < 2.0 < bad_loss
    with pytest.raises(PcalError, match="tags must be"):
        mil_loss(torch.zeros(1, 4), torch.ones(1, 3, dtype=torch.bool))


# ---------------------------------------------------------------- tag masking


def test_tag_masking_never_produces_an_absent_class() -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        logits = torch.randn(200, 7, generator=g) * 20
        tags = torch.rand(200, 7, generator=g) < 0.3
        tags[:20] = False  # rows with no tag at all
        masked = mask_absent(logits, tags)
        has = tags.any(dim=1)
        pred = masked.argmax(dim=1)
        assert tags[has].gather(1, pred[has][:, None]).all()
        assert torch.equal(masked[~has], logits[~has])  # no tag: unmasked
        probs = masked.softmax(dim=1)
        assert torch.isfinite(probs).all() and torch.isfinite(masked.log_softmax(dim=1)).all()
        assert (probs[has][~tags[has]] == 0).all()


def test_tag_masking_per_scene_and_half_precision() -> None:
    tags = torch.tensor([[True, False, False], [False, False, True]])
    rows = tags_per_point(tags, torch.tensor([1, 0, 1]))
    assert rows.tolist() == [[False, False, True], [True, False, False], [False, False, True]]
    logits = torch.tensor([[5.0, 1.0, 0.0]], dtype=torch.float16)
    out = mask_absent(logits, torch.tensor([False, True, False]))
    assert torch.isfinite(out).all() and out.argmax().item() == 1


def test_region_consistency_loss_averages_over_all_rows() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    pseudo = torch.tensor([0, -1, 1])
    ce = F.cross_entropy(logits.detach(), torch.tensor([0, 0, 1]), reduction="none")
    assert region_consistency_loss(logits, pseudo).item() == pytest.approx((ce[0] + ce[2]).item() / 3)
    none = region_consistency_loss(logits, torch.full((3,), -1))
    assert none.item() == 0.0 and none.requires_grad


def test_warmup_weight_is_a_linear_ramp() -> None:
    assert [warmup_weight(s, 4) for s in (0, 1, 2, 4, 9)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert warmup_weight(0, 0) == 1.0
    with pytest.raises(PcalError):
        warmup_weight(1, -1)


# ---------------------------------------------------------------- pseudo-labels


def test_class_adaptive_threshold_hand_table() -> None:
    counts = np.array([400, 100, 0, 50, 200])
    # 0.8 * N_c / max N = 0.8 * [1, 0.25, 0, 0.125, 0.5]
    assert class_adaptive_threshold(counts).tolist() == pytest.approx([0.8, 0.2, 0.0, 0.1, 0.4])
    assert class_adaptive_threshold(counts, base=0.5).tolist() == pytest.approx([0.5, 0.125, 0.0, 0.0625, 0.25])
    assert class_adaptive_threshold(np.zeros(3, dtype=int)).tolist() == [0.8, 0.8, 0.8]
    with pytest.raises(PcalError):
        class_adaptive_threshold(np.array([1, -1]))


def test_region_average_hand_case_numpy_and_torch() -> None:
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8], [0.5, 0.5]], dtype=np.float32)
    region = np.array([7, 7, 3, -1, 3])
    expected = np.array([[0.6, 0.4], [0.6, 0.4], [0.55, 0.45], [0.2, 0.8], [0.55, 0.45]])
    out = region_average(probs, region)
    assert out.dtype == np.float32 and np.allclose(out, expected)
    out_t = region_average(torch.from_numpy(probs), torch.from_numpy(region))
    assert isinstance(out_t, torch.Tensor) and np.allclose(out_t.numpy(), expected)
    assert np.allclose(region_average(probs, np.full(5, -1)), probs)


def test_pseudo_labels_hand_case_regions_threshold_counts() -> None:
    # classes 0..2, class 1 absent from the scene
    probs = np.array([
        [0.50, 0.45, 0.05],  # region 0
        [0.95, 0.00, 0.05],  # region 0
        [0.10, 0.80, 0.10],  # region 1: after masking [0.5, 0, 0.5] -> tie, argmax = 0, conf 0.5
        [0.05, 0.05, 0.90],  # no region: masked [0.0526, 0, 0.947]
    ])
    tags = np.array([True, False, True])
    region = np.array([0, 0, 1, -1])
    labels, counts = pseudo_labels(probs, tags, region, np.zeros(3, dtype=np.int64))
    # all counts 0 -> threshold 0.8 everywhere. Region 0 after masking: [0.909.., 0, 0.0909..]
    # and [0.95, 0, 0.05] -> mean [0.9295, 0, 0.0705] -> class 0 kept (both points).
    assert labels.tolist() == [0, 0, -1, 2]
    assert counts.tolist() == [2, 0, 1]
    # class 2 now has half of class 0's count: threshold 0.4; class 0 faces 0.8
    labels, counts2 = pseudo_labels(probs, tags, region, counts)
    assert labels.tolist() == [0, 0, -1, 2] and counts2.tolist() == [4, 0, 2]
    low = np.array([[0.3, 0.0, 0.7]])  # class 2 at 0.7: kept under 0.4, refused under 0.8
    assert pseudo_labels(low, tags, None, np.array([10, 0, 5]))[0].tolist() == [2]
    assert pseudo_labels(low, tags, None, np.array([0, 0, 10]))[0].tolist() == [-1]
    # base 0: every point kept (final pseudo-label generation)
    assert (pseudo_labels(probs, tags, region, counts, base=0.0)[0] >= 0).all()


def test_pseudo_labels_never_give_an_absent_class_and_torch_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    counts = np.zeros(6, dtype=np.int64)
    for _ in range(20):
        logits = rng.normal(size=(300, 6)) * 5
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        probs[:10] = 0.0
        probs[:10, 0] = 1.0  # all mass on class 0, which may be absent
        tags = rng.random(6) < 0.4
        tags[rng.integers(6)] = True
        region = rng.integers(-1, 30, size=300)
        labels, new = pseudo_labels(probs, tags, region, counts, base=0.0)
        assert (labels >= 0).all() and tags[labels].all()
        labels_t, new_t = pseudo_labels(torch.from_numpy(probs), torch.from_numpy(tags),
                                        torch.from_numpy(region), counts, base=0.0)
        assert np.array_equal(labels_t.numpy(), labels) and np.array_equal(new_t, new)
        assert new.sum() - counts.sum() == (labels >= 0).sum()
        assert (new[~tags] == counts[~tags]).all()
        counts = new
    empty, same = pseudo_labels(probs, np.zeros(6, dtype=bool), region, counts)
    assert (empty == -1).all() and np.array_equal(same, counts)
    with pytest.raises(PcalError, match="tags"):
        pseudo_labels(probs, np.ones(5, dtype=bool), region, counts)


# ---------------------------------------------------------------- tags files


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_tags_csv_long_and_wide(tmp_path: Path) -> None:
    long = _write(tmp_path, "t.csv", "scene,classes\n office_1 , wall; chair |table\n\n# note\nhallway_1,\n001,floor\n")
    tags = read_tags_file(long, CLASSES, SCENES)
    assert list(tags) == ["office_1", "hallway_1", "001"]
    assert np.array_equal(tags["office_1"], _vec("wall", "chair", "table"))
    assert not tags["hallway_1"].any() and np.array_equal(tags["001"], _vec("floor"))
    headerless = _write(tmp_path, "h.csv", "office_2,sofa|floor\n")
    assert np.array_equal(read_tags_file(headerless, CLASSES, SCENES)["office_2"], _vec("sofa", "floor"))
    wide = _write(tmp_path, "w.csv", "Scene,wall,chair,sofa\noffice_1,1,0,1\noffice_2,0,yes,\n")
    tags = read_tags_file(wide, CLASSES, SCENES)
    assert np.array_equal(tags["office_1"], _vec("wall", "sofa")) and np.array_equal(tags["office_2"], _vec("chair"))
    tsv = _write(tmp_path, "t.tsv", "scene\tclasses\noffice_1\twall;floor\n")
    assert np.array_equal(read_tags_file(tsv, CLASSES, SCENES)["office_1"], _vec("wall", "floor"))


def test_read_tags_yaml_and_json(tmp_path: Path) -> None:
    yml = _write(tmp_path, "t.yaml", "office_1: [wall, chair]\n001:\n  - floor\nhallway_1:\noffice_2: 'sofa; table'\n")
    tags = read_tags_file(yml, CLASSES, SCENES)
    assert list(tags) == ["office_1", "001", "hallway_1", "office_2"]  # '001' keeps its text
    assert np.array_equal(tags["001"], _vec("floor")) and not tags["hallway_1"].any()
    assert np.array_equal(tags["office_2"], _vec("sofa", "table"))
    doc = tags_to_json({"office_1": _vec("wall", "sofa"), "hallway_1": _vec()}, CLASSES)
    assert doc["scenes"] == {"office_1": ["wall", "sofa"], "hallway_1": []}
    back = tags_from_json(json.loads(json.dumps(doc)), CLASSES)
    assert np.array_equal(back["office_1"], _vec("wall", "sofa")) and not back["hallway_1"].any()
    path = _write(tmp_path, "t.json", json.dumps(doc))
    assert list(read_tags_file(path, CLASSES, SCENES)) == ["office_1", "hallway_1"]
    with pytest.raises(PcalError, match="another class list"):
        tags_from_json(doc, ["wall", "floor", "chair", "table", "couch"])


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("a.csv", "scene,classes\noffice_9,wall\n", r"line 2: unknown scene 'office_9'.*did you mean 'office_"),
    ("b.csv", "office_1,wall;chiar\n", r"line 1: unknown class 'chiar'.*did you mean 'chair'"),
    ("c.csv", "office_1,wall|SOFA\n", r"unknown class 'SOFA'.*did you mean 'sofa'"),
    ("d.csv", "office_1,wall\noffice_2,floor\n office_1 ,chair\n", r"'office_1' is listed twice \(line 1 and line 3\)"),
    ("e.csv", "\n\n", "empty"),
    ("f.csv", "scene,classes\n# nothing\n", "no scene tags"),
    ("g.csv", "office_1,wall,chair\n", "2 cells"),
    ("h.csv", "scene,wall,chiar\noffice_1,1,0\n", r"unknown class 'chiar' in the header.*'chair'"),
    ("i.csv", "scene,wall\noffice_1,2\n", r"'2' in column 'wall'"),
    ("j.csv", "office_1;wall;chair\n", r"unknown scene 'office_1;wall;chair'.*','"),
    ("a.yaml", "office_1: [wall]\noffice_1: [chair]\n", r"'office_1' is listed twice \(line 1 and line 2\)"),
    ("b.yaml", "office_1: [wall, sofaa]\n", r"unknown class 'sofaa'.*'sofa'"),
    ("c.yaml", "hallway_2: [wall]\n", r"unknown scene 'hallway_2'.*'hallway_1'"),
    ("d.yaml", "", "empty"),
    ("e.yaml", "- office_1\n", "mapping"),
    ("f.yaml", "office_1: [wall\n", "invalid YAML"),
    ("a.json", '{"office_1": ["wall"], "office_1": []}', "'office_1' is listed twice"),
    ("x.xlsx", "office_1,wall\n", "unsupported"),
])
def test_read_tags_bad_files_name_the_culprit(tmp_path: Path, name: str, text: str, needle: str) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(PcalError, match=needle) as info:
        read_tags_file(path, CLASSES, SCENES)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_read_tags_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PcalError, match="not found"):
        read_tags_file(tmp_path / "none.csv", CLASSES, SCENES)


# ---------------------------------------------------------------- cross-modal


def _pairs(n: int = 64, d3: int = 8, d2: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f3 = torch.randn(n, d3, generator=g)
    f2 = torch.cat([f3, torch.zeros(n, d2 - d3)], dim=1)  # image feature = the point's, padded
    return f3, f2


def test_crossmodal_infonce_aligned_beats_shuffled() -> None:
    torch.manual_seed(0)
    f3, f2 = _pairs()
    pad = torch.eye(8, 12)
    head3 = lambda x: x  # noqa: E731  (identity heads: aligned pairs share a direction)
    head2 = lambda x: x @ pad.T  # noqa: E731
    aligned = crossmodal_infonce(f3, f2, head3, head2)
    shuffled = crossmodal_infonce(f3, f2[torch.randperm(len(f2))], head3, head2)
    assert torch.isfinite(aligned) and aligned < 0.1 < math.log(64) - 1 < shuffled
    h3, h2 = ProjectionHead(8, 16), ProjectionHead(12, 16)
    loss = crossmodal_infonce(f3.requires_grad_(), f2, h3, h2, max_rows=20, generator=torch.Generator().manual_seed(1))
    loss.backward()
    assert torch.isfinite(loss) and f3.grad is not None and (f3.grad.abs().sum(dim=1) > 0).sum() == 20


def test_crossmodal_infonce_is_symmetric_by_hand() -> None:
    f3 = torch.tensor([[1.0, 0.0], [0.95, 0.3], [0.9, 0.45]])
    f2 = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # image 0 is every point's nearest; not unit
    ident = lambda x: x  # noqa: E731
    a = f3 / f3.norm(dim=1, keepdim=True)
    b = f2 / f2.norm(dim=1, keepdim=True)
    sim = (a @ b.T / 0.5).tolist()  # not symmetric: row and column directions differ
    rows = [-sim[i][i] + math.log(sum(math.exp(v) for v in sim[i])) for i in range(3)]
    cols = [-sim[i][i] + math.log(sum(math.exp(sim[k][i]) for k in range(3))) for i in range(3)]
    expected = 0.5 * (sum(rows) / 3 + sum(cols) / 3)
    assert abs(sum(rows) - sum(cols)) > 1.0
    assert crossmodal_infonce(f3, f2, ident, ident, temperature=0.5).item() == pytest.approx(expected, rel=1e-5)


def test_crossmodal_infonce_skips_masked_rows() -> None:
    f3, f2 = _pairs(n=32)
    head3, head2 = ProjectionHead(8, 16), ProjectionHead(12, 16)
    base = crossmodal_infonce(f3[:20], f2[:20], head3, head2)
    bad3 = torch.cat([f3[:20], torch.randn(12, 8) * 100])
    bad2 = torch.cat([f2[:20], torch.zeros(6, 12), torch.full((6, 12), float("nan"))])
    bad2[-1, 1:] = 3.0  # NaN in one column only: still skipped
    bad3.requires_grad_()
    loss = crossmodal_infonce(bad3, bad2, head3, head2)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(base.item(), rel=1e-5)
    loss.backward()
    assert (bad3.grad[20:] == 0).all()
    few = crossmodal_infonce(bad3, torch.cat([bad2[:1] * 0 + 1, torch.zeros(31, 12)]), head3, head2)
    assert few.item() == 0.0 and few.requires_grad


def test_read_point_features(tmp_path: Path) -> None:
    feats = np.arange(12, dtype=np.float64).reshape(4, 3)
    feats[2] = np.nan
    np.save(tmp_path / "ok.npy", feats)
    out, seen = read_point_features(tmp_path / "ok.npy", 4)
    assert out.dtype == np.float32 and seen.tolist() == [True, True, False, True]
    assert (out[2] == 0).all() and np.array_equal(out[3], [9, 10, 11])
    bad = {
        "rows.npy": (np.zeros((5, 3)), "5 feature rows but the scene has 4"),
        "flat.npy": (np.zeros(4), "2-D"),
        "cube.npy": (np.zeros((4, 3, 2)), "2-D"),
        "partial.npy": (np.array([[1.0, np.nan], [1, 2], [3, 4], [5, 6]]), "row 0 has NaN in some columns"),
        "inf.npy": (np.array([[1.0, 2], [np.inf, 2], [3, 4], [5, 6]]), "row 1 holds an infinite"),
        "text.npy": (np.array([["a"], ["b"], ["c"], ["d"]]), "real numbers"),
        "obj.npy": (np.array([[1], [2], [3], [None]], dtype=object), "not a readable .npy"),
    }
    for name, (arr, needle) in bad.items():
        np.save(tmp_path / name, arr, allow_pickle=True)
        with pytest.raises(PcalError, match=needle):
            read_point_features(tmp_path / name, 4)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    for path, needle in [(tmp_path / "junk.npy", "not a readable"), (tmp_path / "none.npy", "not found"),
                         (tmp_path / "ok.txt", ".npy file")]:
        with pytest.raises(PcalError, match=needle):
            read_point_features(path, 4)


# ---------------------------------------------------------------- tag drop

ROOM_CLASSES = ["ceiling", "Floor", "wall", "table", "chair"]


def _room(seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """A 4 x 3 x 2.5 m room: floor, ceiling, two walls (x = 0, y = 3), a table top at 0.7 m, chair
    legs standing on the floor, a lamp hanging 0.3 m under the ceiling and one region-less point."""
    rng = np.random.default_rng(seed)
    parts, regions, ids = [], [], {}

    def add(name: str, lo, hi, n: int) -> None:
        ids[name] = len(ids)
        parts.append(rng.uniform(lo, hi, (n, 3)))
        regions.append(np.full(n, ids[name]))

    add("floor_a", (0, 0, 0), (2, 3, 0.02), 60)
    add("floor_b", (2, 0, 0), (4, 3, 0.02), 60)
    add("ceiling", (0, 0, 2.48), (4, 3, 2.5), 50)
    add("wall_x", (0, 0, 0.2), (0.05, 3, 2.3), 40)
    add("wall_y", (0.3, 2.95, 0.2), (3.7, 3, 2.3), 40)
    add("table", (1, 1, 0.68), (2, 2, 0.72), 30)
    add("chair_legs", (3, 1, 0.0), (3.4, 1.4, 0.45), 30)
    add("lamp", (1.8, 1.4, 2.0), (2.2, 1.6, 2.2), 10)
    xyz = np.concatenate(parts + [np.array([[0.0, 0.0, 0.0]])]).astype(np.float32)
    return xyz, np.concatenate(regions + [np.array([-1])]).astype(np.int32), ids


def test_structural_surfaces_are_the_regions_on_the_faces() -> None:
    xyz, region, ids = _room()
    surfaces = structural_surfaces(xyz, region, ROOM_CLASSES)
    assert sorted(surfaces) == [0, 1, 2]  # class names match case-insensitively; table/chair are no surface
    assert surfaces[0].tolist() == [ids["ceiling"]]  # the lamp is 0.3 m below: not on the ceiling
    assert surfaces[1].tolist() == [ids["floor_a"], ids["floor_b"]]  # the whole floor, not one patch
    assert surfaces[2].tolist() == [ids["wall_x"], ids["wall_y"]]
    assert structural_surfaces(xyz, region, ["a", "b", "c", "d", "e"]) == {}  # no structural class: no surface
    assert structural_surfaces(xyz, np.full(len(xyz), -1), ROOM_CLASSES) == {}


def test_tag_drop_removes_exactly_the_surface_and_its_class() -> None:
    xyz, region, ids = _room()
    surfaces = structural_surfaces(xyz, region, ROOM_CLASSES)
    tags = np.array([True, True, True, True, False])
    known = np.full(len(xyz), -1)
    keep, out, dropped = tag_drop(tags, region, known, surfaces, 1.0, np.random.default_rng(0))
    assert dropped == [0, 1, 2] and out.tolist() == [False, False, False, True, False]
    on_surface = np.isin(region, [ids[k] for k in ("ceiling", "floor_a", "floor_b", "wall_x", "wall_y")])
    np.testing.assert_array_equal(keep, ~on_surface)  # exactly the surfaces' points; the region-less point stays
    assert tags.tolist() == [True, True, True, True, False]  # the input is not modified

    untagged = tags.copy()
    untagged[1] = False  # an untagged structural class is never removed
    keep, out, dropped = tag_drop(untagged, region, known, surfaces, 1.0, np.random.default_rng(0))
    assert dropped == [0, 2] and np.isin(region[keep], [ids["floor_a"], ids["floor_b"]]).any()

    veto = known.copy()
    veto[np.flatnonzero(region == ids["wall_x"])[0]] = 1  # a wall point known to be floor, off the floor surface
    keep, out, dropped = tag_drop(tags, region, veto, surfaces, 1.0, np.random.default_rng(0))
    assert dropped == [0, 2] and out[1] and (region[keep] == ids["floor_b"]).any()


def test_tag_drop_never_drops_with_zero_probability_and_is_reproducible() -> None:
    xyz, region, _ = _room()
    surfaces = structural_surfaces(xyz, region, ROOM_CLASSES)
    tags = np.ones(5, dtype=bool)
    known = np.full(len(xyz), -1)
    rng = np.random.default_rng(3)
    keep, out, dropped = tag_drop(tags, region, known, surfaces, 0.0, rng)
    assert keep.all() and out.all() and dropped == []
    assert rng.random() == np.random.default_rng(3).random()  # nothing drawn
    draws = [tag_drop(tags, region, known, surfaces, 0.5, np.random.default_rng(s))[2] for s in range(40)]
    again = [tag_drop(tags, region, known, surfaces, 0.5, np.random.default_rng(s))[2] for s in range(40)]
    assert draws == again
    counts = np.bincount(np.concatenate([d for d in draws if d] or [[0]]), minlength=3)
    assert all(8 <= c <= 32 for c in counts[:3])  # each class about half of the time
    with pytest.raises(PcalError, match=r"\[0, 1\]"):
        tag_drop(tags, region, known, surfaces, 1.5, rng)


def test_step_scenes_apply_the_drop_per_seed_step_and_scene() -> None:
    from pcal_cli.data.scene import Scene
    from pcal_cli.weak.views import StepScenes

    xyz, region, _ = _room()
    scene = Scene(name="room", xyz=xyz, region=region)
    surfaces = structural_surfaces(xyz, region, ROOM_CLASSES)
    known = np.full(len(xyz), -1, dtype=np.int16)
    scenes = [(scene, known, np.ones(5, dtype=bool))] * 3

    def views(p: float, seed: int, step: int) -> StepScenes:
        return StepScenes(scenes, lambda index: surfaces, p, seed, step)

    plain = views(0.0, 0, 0)[1]
    assert len(plain[0]) == len(xyz) and plain[1] is known and plain[2].all()
    np.testing.assert_array_equal(plain[0].point_index, np.arange(len(xyz)))
    every = views(1.0, 0, 0)
    part, part_known, part_tags = every[2]
    assert every.dropped(2) == [0, 1, 2] and part_tags.tolist() == [False, False, False, True, True]
    np.testing.assert_array_equal(part.xyz, xyz[part.point_index])  # rows of the original scene
    assert len(part_known) == len(part) == int((~np.isin(region, np.concatenate(list(surfaces.values())))).sum())
    crop = part.subset(np.array([0, 2]))
    np.testing.assert_array_equal(crop.point_index, part.point_index[[0, 2]])  # survives a crop
    half = [views(0.5, 7, step).dropped(index) for step in range(6) for index in range(3)]
    assert half == [views(0.5, 7, step).dropped(index) for step in range(6) for index in range(3)]
    assert half != [views(0.5, 8, step).dropped(index) for step in range(6) for index in range(3)]


# ---------------------------------------------------------------- image features for training


def _features(tmp_path: Path, arrays: dict[str, np.ndarray]) -> Path:
    folder = tmp_path / "feats"
    folder.mkdir(exist_ok=True)
    for name, arr in arrays.items():
        np.save(folder / f"{name}.npy", arr, allow_pickle=True)
    return folder


def test_image_features_folder_checks_and_rows(tmp_path: Path, monkeypatch) -> None:
    good = np.arange(20, dtype=np.float16).reshape(10, 2)
    good[3] = np.nan
    folder = _features(tmp_path, {"a": good, "b": np.ones((4, 2), np.float32)})
    monkeypatch.setattr(ImageFeatures, "BLOCK_ROWS", 3)  # several blocks per file
    feats = ImageFeatures(folder)
    assert feats.dim == 2
    feats.check([("a", 10), ("b", 4)])
    assert feats.seen("a").tolist() == [True] * 3 + [False] + [True] * 6
    rows = feats.rows("a", np.array([5, 3, 0]))
    assert rows.dtype == np.float32 and rows.tolist() == [[10, 11], [0, 0], [0, 1]]
    cases = [
        ([("a", 10), ("c", 4)], "no c.npy in .* for training scene 'c'"),
        ([("a", 11)], "10 feature rows but the scene has 11 points"),
    ]
    for scenes, needle in cases:
        with pytest.raises(PcalError, match=needle):
            ImageFeatures(folder).check(scenes)
    bad = good.astype(np.float32)
    bad[7, 0] = np.nan  # in the third block
    _features(tmp_path, {"p": bad, "w": np.ones((4, 3), np.float32), "s": np.array([["x"]] * 4),
                         "z": np.zeros((4, 2), dtype=np.complex64)})
    for scenes, needle in [([("p", 10)], "row 7 has NaN in some columns"), ([("a", 10), ("w", 4)], "3 columns"),
                           ([("s", 4)], "real numbers"), ([("z", 4)], "real numbers")]:
        with pytest.raises(PcalError, match=needle):
            ImageFeatures(folder).check(scenes)
    ImageFeatures(folder).check([("p", 10)], values=False)  # headers only: the NaN is found in training
    with pytest.raises(PcalError, match="not a folder"):
        ImageFeatures(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PcalError, match="no <scene>.npy"):
        _ = ImageFeatures(tmp_path / "empty").dim


def test_crossmodal_heads_learn_and_resume_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    truth = torch.randn(48, 6, generator=g)
    image = torch.cat([truth, torch.randn(48, 4, generator=g) * 0.1], dim=1)  # correlated with the points

    def run(steps: int, heads: CrossModalHeads, points: torch.Tensor) -> list[float]:
        opt = torch.optim.AdamW([points], lr=1e-2)
        losses = []
        for _ in range(steps):
            loss = heads.loss(points, image)
            heads.zero_grad()
            opt.zero_grad()
            loss.backward()
            opt.step()
            heads.step(1e-2)
            losses.append(float(loss.detach()))
        return losses

    torch.manual_seed(0)
    heads = CrossModalHeads(6, 10, out_dim=16)
    points = (truth + 0.5 * torch.randn(48, 6, generator=g)).requires_grad_()
    start = points.detach().clone()
    losses = run(60, heads, points)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.5 * losses[0]

    torch.manual_seed(0)
    first = CrossModalHeads(6, 10, out_dim=16)
    p1 = start.clone().requires_grad_()
    run(30, first, p1)
    saved = first.state_dict()
    assert any(k.startswith("optimizer.") for k in saved) and all(isinstance(v, torch.Tensor) for v in saved.values())
    resumed = CrossModalHeads(6, 10, out_dim=16)
    resumed.load_state_dict(saved)
    # the point features' own optimiser restarts here, so compare the heads after one identical step
    copy = CrossModalHeads(6, 10, out_dim=16)
    copy.load_state_dict(saved, optimizer=False)
    for module in (first, resumed):
        module.zero_grad()
        module.loss(p1.detach(), image).backward()
        module.step(1e-2)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), resumed.parameters()))
    copy.zero_grad()
    copy.loss(p1.detach(), image).backward()
    copy.step(1e-2)
    assert not all(torch.equal(a, b) for a, b in zip(first.parameters(), copy.parameters()))  # fresh moments
    with pytest.raises(PcalError, match="other image features"):
        CrossModalHeads(6, 12, out_dim=16).load_state_dict(saved)


def test_crossmodal_batch_loss_uses_seen_voxels_only(tmp_path: Path) -> None:
    from pcal_cli.training.data import Voxelized
    from pcal_cli.weak.views import indexed
    from pcal_cli.data.scene import Scene

    rng = np.random.default_rng(0)
    n = 40
    rows = rng.standard_normal((n, 5)).astype(np.float32)
    rows[:10] = np.nan  # points 0-9 unseen
    folder = _features(tmp_path, {"s": rows, "t": np.full((6, 5), np.nan, np.float32)})
    feats = ImageFeatures(folder)
    feats.check([("s", n), ("t", 6)])
    inverse_s = np.repeat(np.arange(20), 2)  # voxel v holds points 2v, 2v+1: voxels 0-4 unseen
    parts = [indexed(Scene(name="s", xyz=np.zeros((n, 3)))), indexed(Scene(name="t", xyz=np.zeros((6, 3))))]
    items = [Voxelized(np.zeros((20, 3), np.int32), np.zeros((20, 1), np.float32), np.full(20, -1), inverse_s),
             Voxelized(np.zeros((3, 3), np.int32), np.zeros((3, 1), np.float32), np.full(3, -1), np.arange(6) // 2)]
    point_feats = torch.randn(n + 6, 8, requires_grad=True)
    heads = CrossModalHeads(8, 5, out_dim=8)
    loss = crossmodal_batch_loss(point_feats, items, parts, feats, heads, torch.Generator().manual_seed(0),
                                 max_voxels=6)
    loss.backward()
    touched = np.flatnonzero(point_feats.grad.abs().sum(dim=1).numpy() > 0)
    assert torch.isfinite(loss) and loss > 0 and len(touched) == 6  # 6 of the 15 seen voxels, one row each
    assert (touched >= 10).all() and (touched < n).all() and (touched % 2 == 0).all()
    nothing = crossmodal_batch_loss(point_feats, items[1:], parts[1:], feats, heads, torch.Generator())
    assert nothing.item() == 0.0 and nothing.requires_grad


def test_scene_tag_teacher_ramps_to_0999():
    from pcal_cli.training.recipes import TAGS_KEEP, tags_keep

    assert tags_keep(0) == 0.0  # the first step copies the student
    assert tags_keep(9) == pytest.approx(0.9)
    assert tags_keep(99) == pytest.approx(0.99)
    assert tags_keep(10_000) == TAGS_KEEP == 0.999
    assert all(tags_keep(s) <= tags_keep(s + 1) for s in range(2000))


def test_a_recessed_door_survives_a_wall_drop_with_its_tag() -> None:
    rng = np.random.default_rng(1)
    classes = ["ceiling", "floor", "wall", "door"]

    def room(door_x: tuple[float, float]):
        parts = [rng.uniform((0, 0, 0), (4, 3, 0.01), (80, 3)),          # floor, region 0
                 rng.uniform((0, 0, 2.49), (4, 3, 2.5), (80, 3)),        # ceiling, region 1
                 rng.uniform((0, 0, 0.1), (0.01, 3, 2.4), (80, 3)),      # wall in the plane x = 0, region 2
                 rng.uniform((door_x[0], 1, 0.1), (door_x[1], 1.9, 2.0), (30, 3))]  # door leaf, region 3
        region = np.repeat([0, 1, 2, 3], [80, 80, 80, 30]).astype(np.int32)
        return np.concatenate(parts).astype(np.float32), region

    tags = np.array([True, True, True, True])
    xyz, region = room((0.06, 0.065))  # recessed 6 cm behind the wall's face
    surfaces = structural_surfaces(xyz, region, classes)
    assert surfaces[2].tolist() == [2]  # the wall's own region only
    assert 3 in structural_surfaces(xyz, region, classes, coplanar=0)[2]  # the earlier 0.2 m band took the door
    known = np.full(len(xyz), -1)
    known[region == 3] = 3  # door points known (a round with point labels)
    keep, out, dropped = tag_drop(tags, region, known, {2: surfaces[2]}, 1.0, np.random.default_rng(0))
    assert dropped == [2] and keep[region == 3].all() and out[3] and not out[2]

    xyz, region = room((0.0, 0.005))  # a door flush with the wall lies in its plane: it goes with it
    assert structural_surfaces(xyz, region, classes)[2].tolist() == [2, 3]


def test_class_prior_stops_a_class_tagged_everywhere_from_taking_the_argmax() -> None:
    from pcal_cli.weak import ClassPrior

    # class 0 is tagged in both scenes and scores 0.6 everywhere; class 1 (scene a only) scores
    # 0.4 on its own points (the first half of scene a), 0.1 elsewhere
    a = np.array([[0.6, 0.4, 0.0]] * 4 + [[0.9, 0.1, 0.0]] * 4)
    b = np.array([[0.6, 0.0, 0.4]] * 4 + [[0.9, 0.0, 0.1]] * 4)
    tags_a, tags_b = np.array([1, 1, 0], bool), np.array([1, 0, 1], bool)
    counts = np.zeros(3, np.int64)
    plain, _ = pseudo_labels(a, tags_a, None, counts, base=0.0)
    assert (plain == 0).all()  # the release's argmax: the class tagged everywhere takes every point
    prior = ClassPrior(3)
    prior.add(a, tags_a)
    prior.add(b, tags_b)
    divisors = prior.divisors()
    np.testing.assert_allclose(divisors, [0.75, 0.25, 0.25])  # mean masked score over the tagged scenes
    calibrated, _ = pseudo_labels(a, tags_a, None, counts, base=0.0, prior=divisors)
    assert calibrated.tolist() == [1] * 4 + [0] * 4
    assert (pseudo_labels(b, tags_b, None, counts, base=0.0, prior=divisors)[0] == [2] * 4 + [0] * 4).all()
    torch_labels, _ = pseudo_labels(torch.from_numpy(a), tags_a, None, counts, base=0.0, prior=divisors)
    assert torch_labels.tolist() == calibrated.tolist()
    untagged = ClassPrior(3)
    untagged.add(a, tags_a)
    assert untagged.divisors()[2] == 1.0  # a class no scene is tagged with is left alone
    with pytest.raises(PcalError, match="prior"):
        pseudo_labels(a, tags_a, None, counts, base=0.0, prior=np.array([0.5, 0.0, 1.0]))
