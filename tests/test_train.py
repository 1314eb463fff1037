"""``train`` and ``evaluate`` on tiny synthetic projects (tiny networks, a few steps)."""

import json

import numpy as np
import pytest
import torch

from pcal_cli.data.ply import read_ply, write_ply
from pcal_cli.errors import PcalError
from pcal_cli.evaluation.metrics import confusion_matrix, iou_per_class, summarize
from pcal_cli.label_files import read_label_file, write_label_file
from pcal_cli.prepare import PrepareOptions, prepare_project
from pcal_cli.project import Project
from pcal_cli.training.checkpoint import load_checkpoint
from pcal_cli.training.data import voxelize
from pcal_cli.training.supervised import TrainOptions, train

TINY = dict(backbone="minkunet", cr=0.125, steps=4, batch_size=2, device="cpu", checkpoint_every=2)


@pytest.fixture(scope="module")
def base_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj") / "p"
    prepare_project("synthetic", None, root, {"scenes": 3, "points": 1500}, PrepareOptions(regions="none"))
    return root


@pytest.fixture
def project(base_project, tmp_path):
    import shutil

    root = tmp_path / "p"
    shutil.copytree(base_project, root)
    return Project.open(root)


def _label_round(project, round_index=0, fraction=0.05, seed=0):
    """Reveal a random ``fraction`` of each training scene's points as round ``round_index``."""
    rng = np.random.default_rng(seed)
    for name in project.scenes("train"):
        scene = read_ply(project.scene_path("train", name))
        labels = np.full(len(scene), -1, dtype=np.int16)
        pick = rng.random(len(scene)) < fraction
        labels[pick] = scene.label[pick]
        write_label_file(project.round_dir(round_index) / "labels" / f"{name}.npz", labels)


def _weights(path):
    return load_checkpoint(path)["model"]


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_voxel_label_is_the_majority_of_known_labels():
    xyz = np.array([[0.01, 0, 0], [0.02, 0, 0], [0.03, 0, 0], [0.04, 0, 0], [0.5, 0, 0]], dtype=np.float32)
    labels = np.array([2, 1, 1, -1, -1])
    v = voxelize(xyz, np.zeros((5, 1), np.float32), labels, 0.1, 3)
    assert v.labels.tolist() == [1, -1]  # first point says 2, the majority says 1
    assert v.inverse.tolist() == [0, 0, 0, 0, 1]


def test_train_reads_round_labels_only_and_is_deterministic(project):
    _label_round(project)
    first = train(project, 0, TrainOptions(**TINY))
    assert not first.skipped and first.steps == 4 and np.isfinite(first.final_loss)
    state = load_checkpoint(first.path)
    expected = sum(int((read_label_file(p) >= 0).sum()) for p in (project.round_dir(0) / "labels").glob("*.npz"))
    assert state["config"]["labelled_points"] == expected
    assert state["config"]["seed"] == 0 and state["config"]["round"] == 0
    weights = _weights(first.path)

    for name in project.scenes("train"):  # scramble the ground truth in the PLYs
        path = project.scene_path("train", name)
        scene = read_ply(path)
        scene.label = np.zeros_like(scene.label)
        write_ply(path, scene)
    again = train(project, 0, TrainOptions(**TINY), force=True)
    assert _same(weights, _weights(again.path))  # same labels + seed -> same weights; GT never read

    other_seed = train(project, 0, TrainOptions(**{**TINY, "seed": 1}), force=True)
    assert not _same(weights, _weights(other_seed.path))


def test_scene_list_reads_on_demand_within_its_cache():
    from pcal_cli.training.scenes import SceneList, nbytes

    reads = []

    def load(name):
        reads.append(name)
        return (np.full(100, int(name[1:]), dtype=np.int64), None) if name != "s3" else None

    names = [f"s{i}" for i in range(6)]
    scenes = SceneList.of_usable(names, load, cache_bytes=2 * 800)  # room for two items
    assert scenes.names == ["s0", "s1", "s2", "s4", "s5"] and len(scenes) == 5 and reads == names
    assert int(scenes[3][0][0]) == 4 and int(scenes[-1][0][0]) == 5
    assert reads == names  # s4 and s5 are the two cached ones
    assert int(scenes[0][0][0]) == 0 and reads[-1] == "s0"  # s0 was evicted: read again
    assert [int(item[0][0]) for item in scenes] == [0, 1, 2, 4, 5]
    assert sum(nbytes(item) for _, (item, _) in scenes._cache.items()) <= 2 * 800
    with pytest.raises(IndexError):
        scenes[5]


def test_training_with_a_tiny_scene_cache_gives_the_same_weights(project, monkeypatch):
    import pcal_cli.training.scenes as scenes_module

    _label_round(project)
    reference = _weights(train(project, 0, TrainOptions(**TINY)).path)
    monkeypatch.setattr(scenes_module, "CACHE_BYTES", 1)  # every step reads its scenes again
    again = train(project, 0, TrainOptions(**TINY), force=True)
    assert _same(reference, _weights(again.path))


def test_existing_model_is_skipped(project):
    _label_round(project)
    train(project, 0, TrainOptions(**TINY))
    assert train(project, 0, TrainOptions(**TINY)).skipped


def test_interrupted_run_resumes_to_the_same_weights(project):
    _label_round(project)
    reference = _weights(train(project, 0, TrainOptions(**{**TINY, "steps": 6})).path)
    (project.round_dir(0) / "model.pt").unlink()

    def interrupt(done, total, loss):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(project, 0, TrainOptions(**{**TINY, "steps": 6}), on_step=interrupt)
    assert (project.round_dir(0) / "model.partial.pt").is_file()
    assert not (project.round_dir(0) / "model.pt").exists()
    with pytest.raises(PcalError, match="--resume"):
        train(project, 0, TrainOptions(**{**TINY, "steps": 6}))
    with pytest.raises(PcalError, match="other settings"):
        train(project, 0, TrainOptions(**{**TINY, "steps": 6, "lr": 0.1}), resume=True)
    resumed = train(project, 0, TrainOptions(**{**TINY, "steps": 6}), resume=True)
    assert resumed.resumed_from == 4
    assert _same(reference, _weights(resumed.path))
    assert not (project.round_dir(0) / "model.partial.pt").exists()


def test_full_reference_and_evaluate(project):
    result = train(project, None, TrainOptions(**{**TINY, "backbone": "spvcnn"}))
    assert result.path == project.root / "full" / "model.pt"
    assert result.labelled_points == 3000
    from pcal_cli.evaluation.evaluate import evaluate

    metrics = evaluate(project, None, "test", device="cpu", save_predictions=True)
    assert metrics["points"] == 1500 and metrics["labelled_percent"] == 100.0
    assert 0.0 <= metrics["miou"] <= 1.0 and set(metrics["iou"]) == set(project.config.classes)
    saved = json.loads((project.root / "full" / "metrics.json").read_text())
    assert saved["test"]["miou"] == metrics["miou"]
    prediction = read_ply(project.root / "full" / "predictions" / "room_002.ply")
    assert len(prediction) == 1500
    confusion = np.array(metrics["confusion"])
    truth = read_ply(project.scene_path("test", "room_002")).label
    np.testing.assert_array_equal(confusion, confusion_matrix(truth, prediction.label, 13))


def test_warm_start_uses_the_previous_round(project):
    _label_round(project, 0)
    train(project, 0, TrainOptions(**TINY))
    _label_round(project, 1, fraction=0.1)
    result = train(project, 1, TrainOptions(**{**TINY, "warm_start": True}))
    assert load_checkpoint(result.path)["config"]["warm_start_from"] == "rounds/r000/model.pt"
    with pytest.raises(PcalError, match="warm-start"):
        train(project, 1, TrainOptions(**{**TINY, "warm_start": True, "cr": 0.25}), force=True)


def test_metrics_rules():
    confusion = confusion_matrix(np.array([0, 0, 1, 1, -1]), np.array([0, 1, 1, 1, 2]), 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    iou = iou_per_class(confusion)
    assert iou[0] == pytest.approx(0.5) and iou[1] == pytest.approx(2 / 3) and np.isnan(iou[2])
    summary = summarize(confusion, ["a", "b", "c"])
    assert summary["miou"] == pytest.approx((0.5 + 2 / 3) / 2) and summary["iou"]["c"] is None
    assert summary["oa"] == pytest.approx(0.75) and summary["classes_in_mean"] == 2


def test_miou_ignores_classes_only_predicted():
    """A stray predicted class gets IoU 0 in the table but leaves the mean's classes unchanged."""
    truth = np.array([0, 0, 1, 1])
    clean = summarize(confusion_matrix(truth, np.array([0, 0, 1, 1]), 3), ["a", "b", "c"])
    stray = summarize(confusion_matrix(truth, np.array([0, 2, 1, 1]), 3), ["a", "b", "c"])
    assert clean["miou"] == pytest.approx(1.0) and clean["classes_in_mean"] == 2
    assert stray["iou"]["c"] == 0.0 and stray["classes_in_mean"] == 2
    assert stray["miou"] == pytest.approx((0.5 + 1.0) / 2)
    assert stray["miou_union"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def _clean_failure(result, fragment):
    assert result.code == 2, result.err
    assert fragment in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err


def test_cli_bad_inputs(pcal, project, tmp_path, monkeypatch):
    p = project.root
    _clean_failure(pcal("train", "-p", p, "--steps", "1"), "no labelling rounds")
    (p / "rounds" / "r000").mkdir()
    _clean_failure(pcal("train", "-p", p, "--steps", "1"), "no labelled points")
    _label_round(project)
    _clean_failure(pcal("train", "-p", p, "--backbone", "pointnet"), "unknown backbone")
    _clean_failure(pcal("train", "-p", p, "--round", "7"), "round 7 does not exist")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _clean_failure(pcal("train", "-p", p, "--device", "cuda"), "no CUDA device")
    _clean_failure(pcal("evaluate", "-p", p), "no checkpoint")
    (p / "rounds" / "r000" / "model.pt").write_bytes(b"not a checkpoint")
    _clean_failure(pcal("evaluate", "-p", p), "not a loadable pcal checkpoint")

    empty = tmp_path / "testonly"
    prepare_project("synthetic", None, empty, {"scenes": 1, "points": 500}, PrepareOptions(regions="none"))
    _clean_failure(pcal("train", "-p", empty, "--full"), "no training scenes")


def test_cli_train_then_evaluate(pcal, project):
    _label_round(project)
    p = project.root
    result = pcal("train", "-p", p, "--cr", "0.125", "--steps", "2", "--device", "cpu")
    assert result.code == 0, result.err
    assert "trained round 0" in result.out
    assert "skipped" in pcal("train", "-p", p, "--steps", "2").err
    result = pcal("evaluate", "-p", p, "--device", "cpu")
    assert result.code == 0, result.err
    assert "mIoU" in result.out and "ceiling" in result.out
    assert "test" in json.loads((p / "rounds" / "r000" / "metrics.json").read_text())


def test_pickled_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "pcal-checkpoint-1", "model": {}, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(PcalError, match="not a loadable"):
        load_checkpoint(tmp_path / "evil.pt")


def test_bf16_mixed_precision_trains_on_cpu_and_keeps_float32_weights(project):
    _label_round(project)
    full = _weights(train(project, 0, TrainOptions(**TINY)).path)
    mixed = train(project, 0, TrainOptions(**{**TINY, "precision": "bf16"}), force=True)
    assert np.isfinite(mixed.final_loss)
    state = load_checkpoint(mixed.path)
    assert state["config"]["precision"] == "bf16"
    weights = state["model"]
    assert all(w.dtype == full[k].dtype for k, w in weights.items())  # checkpoints stay float32
    assert not _same(full, weights)  # the steps really ran in bfloat16
    again = _weights(train(project, 0, TrainOptions(**{**TINY, "precision": "bf16"}), force=True).path)
    assert _same(weights, again)  # and deterministically on a CPU


@pytest.mark.parametrize("changes, message", [({"precision": "fp8"}, "unknown --precision 'fp8'"),
                                              ({"precision": "fp16"}, "needs a CUDA device"),
                                              ({"precision": "fp16", "semi": "teacher-student"}, "CUDA")])
def test_precision_errors(project, changes, message):
    _label_round(project)
    with pytest.raises(PcalError, match=message):
        train(project, 0, TrainOptions(**{**TINY, **changes}))
    assert not (project.round_dir(0) / "model.pt").exists()


def _features_before_nir(xyz, scene, channels, rgb=None, rows=None):
    """point_features as it was before nir existed: the reference the features must still equal."""
    pick = (lambda a: a) if rows is None else (lambda a: a[rows])  # noqa: E731
    centre = np.array([xyz[:, 0].mean(), xyz[:, 1].mean(), xyz[:, 2].min()], dtype=np.float32)
    parts = [pick(xyz).astype(np.float32) - centre]
    if "rgb" in channels:
        parts.append(pick(scene.rgb if rgb is None else rgb).astype(np.float32) / 255.0 - 0.5)
    if "intensity" in channels:
        values = scene.intensity.astype(np.float32)
        scale = float(np.percentile(values, 99)) if len(values) else 1.0
        parts.append((pick(values) / (scale if scale > 0 else 1.0))[:, None])
    return np.concatenate(parts, axis=1)


def _scene_with_every_channel(n=500, seed=3):
    from pcal_cli.data.scene import Scene

    rng = np.random.default_rng(seed)
    return Scene("s", rng.random((n, 3)) * 20, rgb=rng.integers(0, 256, (n, 3)),
                 intensity=rng.random(n) * 300, nir=rng.random(n) * 5000)


@pytest.mark.parametrize("channels", [[], ["rgb"], ["intensity"], ["rgb", "intensity"], ["intensity", "rgb"]])
def test_features_without_nir_are_unchanged_bit_for_bit(channels):
    from pcal_cli.training.data import input_channels, point_features

    scene = _scene_with_every_channel()  # a nir array present but not asked for changes nothing
    rows = np.array([4, 0, 17, 17, 499])
    for kwargs in ({}, {"rows": rows}, {"rgb": np.flip(scene.rgb, axis=0).copy()}):
        got = point_features(scene.xyz, scene, channels, **kwargs)
        expected = _features_before_nir(scene.xyz, scene, channels, **kwargs)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
        assert got.shape[1] == input_channels(channels) == 3 + 3 * ("rgb" in channels) + ("intensity" in channels)


def test_nir_feature_is_appended_last_and_scaled_by_its_99th_percentile():
    from pcal_cli.training.data import input_channels, point_features

    scene = _scene_with_every_channel()
    for channels in (["nir"], ["rgb", "intensity", "nir"], ["nir", "rgb"]):
        got = point_features(scene.xyz, scene, channels)
        before = _features_before_nir(scene.xyz, scene, [c for c in channels if c != "nir"])
        assert got.shape[1] == input_channels(channels) == before.shape[1] + 1
        np.testing.assert_array_equal(got[:, :-1], before)
        np.testing.assert_array_equal(got[:, -1], scene.nir / np.float32(np.percentile(scene.nir, 99)))
    rows = np.array([9, 2])
    np.testing.assert_array_equal(point_features(scene.xyz, scene, ["nir"], rows=rows),
                                  point_features(scene.xyz, scene, ["nir"])[rows])
    scene.nir[:] = 0  # a zero percentile divides by 1
    assert (point_features(scene.xyz, scene, ["nir"])[:, -1] == 0).all()


def test_a_nir_project_trains_and_evaluates(pcal, tmp_path):
    from pcal_cli.data.scene import Scene

    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    n = 1500
    xyz = rng.random((n, 3)) * np.array([8.0, 4.0, 2.0])
    write_ply(raw / "tile.ply", Scene("tile", xyz, label=(xyz[:, 2] > 1).astype(int), rgb=rng.integers(0, 256, (n, 3)),
                                      nir=rng.random(n) * 1000))
    p = tmp_path / "p"
    result = pcal("prepare", "folder", raw, "-p", p, "--classes", "low,high", "--channels", "nir",
                  "--holdout-area", "0.25", "--regions", "none")
    assert result.code == 0, result.err
    assert Project.open(p).config.channels == ["nir"]
    result = pcal("train", "-p", p, "--full", "--cr", "0.125", "--steps", "1", "--device", "cpu")
    assert result.code == 0, result.err
    config = load_checkpoint(p / "full" / "model.pt")["config"]
    assert config["channels"] == ["nir"] and config["in_channels"] == 4
    result = pcal("evaluate", "-p", p, "--full", "--device", "cpu")
    assert result.code == 0, result.err
    assert "mIoU" in result.out
