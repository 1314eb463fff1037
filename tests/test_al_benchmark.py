"""benchmarks/al_benchmark.py --profile smoke: the pipeline end to end and the results JSON's fields."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_profile_writes_the_documented_results(tmp_path):
    results = tmp_path / "smoke.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "al_benchmark.py"), "--profile", "smoke",
                           "--out", str(tmp_path / "work"), "--results", str(results), "--workers", "1"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    record = json.loads(results.read_text())
    assert {"machine", "command", "commit", "project", "reference", "tracks", "metric", "wall_seconds"} <= set(record)
    assert "ground truth" in record["metric"] and record["machine"]["cpus_usable"] >= 1
    check = record["reference"]["convergence"]
    assert check["steps_doubled"] == 2 * check["steps"] and set(record["reference"]["seeds"]) == {"0", "1"}
    track = record["tracks"]["region"]
    assert set(track["methods"]) == {"random", "margin"}
    for method, runs in track["methods"].items():
        assert set(runs) == {"0", "1"}
        for seed, rows in runs.items():
            assert [row["round"] for row in rows] == [0, 1]
            last = rows[-1]
            assert {"points_added", "void_share", "labelled_percent", "miou", "iou"} <= set(last)
            assert last["miou"] is not None and set(last["iou"]) == set(record["project"]["classes"])
    # the same round 0 for both methods of a seed, and the same budget afterwards
    for seed in ("0", "1"):
        assert track["methods"]["random"][seed][0] == track["methods"]["margin"][seed][0]
    # a continuing track holds its base track's rounds and one more
    more = record["tracks"]["region_more"]
    assert more["continues"] == "region"
    for method, runs in more["methods"].items():
        for seed, rows in runs.items():
            assert rows[:2] == track["methods"][method][seed] and rows[2]["round"] == 2
            assert rows[2]["points_added"] > 0 and rows[2]["miou"] is not None
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import al_benchmark

    text = al_benchmark.render(record)
    assert "| round | % labelled | `random` | `margin` |" in text and "Convergence check" in text
    assert "Rounds 0-1: the runs of track `region` (above); then 1 round buying 2%" in text
    # --collect-only trains nothing and gathers the same runs again
    again = tmp_path / "again.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "al_benchmark.py"), "--profile", "smoke",
                           "--out", str(tmp_path / "work"), "--results", str(again), "--collect-only"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    collected = json.loads(again.read_text())
    assert collected["tracks"] == record["tracks"] and collected["wall_seconds"] is None
    assert "Paired with `random`" in text


def test_paired_lines_compare_each_seed_with_its_own_random_run():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import al_benchmark

    def rows(*mious):
        return [{"round": r, "miou": m} for r, m in enumerate(mious)]

    methods = {"random": {"0": rows(0.2, 0.3), "1": rows(0.1, 0.4)},
               "margin": {"0": rows(0.2, 0.5), "1": rows(0.1, 0.35)}}
    lines = al_benchmark.paired_lines(methods, "random")
    assert lines[-1] == "- `margin`: +7.5 on average, ahead on 1 of 2 seeds (s0 +20.0, s1 -5.0; round 1)"


def test_only_methods_cuts_tracks_and_drops_empty_ones():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import al_benchmark

    profile = al_benchmark.only_methods(al_benchmark.PROFILES["synthetic"], ["random", "redal"])
    assert [t.name for t in profile.tracks] == ["region"]
    assert profile.tracks[0].methods == ("random", "redal")


def test_wsegpc_benchmark_share_measures():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import wsegpc

    # truth rows, predictions columns: class 0 has 80 points, class 1 20, class 2 none
    confusion = [[60, 10, 10], [0, 20, 0], [0, 0, 0]]
    # class 0: 60 of 100 predicted against 80 true (0.75x); class 1: 30 against 20 (1.5x)
    assert wsegpc.share_ratio(confusion) == 1.5
    assert wsegpc.absent_share(confusion) == 0.1  # 10 of 100 predictions name class 2


def test_a_reference_reused_from_seed_0_is_not_counted_as_another_seed(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import al_benchmark
    from dataclasses import asdict
    from types import SimpleNamespace

    from pcal_cli.evaluation.evaluate import METRICS_FILE
    from pcal_cli.rounds import FULL_DIR
    from pcal_cli.steps.compare import reference_folder, reference_options
    from pcal_cli.training.supervised import TrainOptions

    train = asdict(TrainOptions(steps=10))
    settings = {"train": {k: v for k, v in train.items() if k not in ("seed", "device")}, "full_steps": 30}
    project = SimpleNamespace(root=tmp_path)
    own = reference_folder(project, reference_options(TrainOptions(steps=10), 30, 0)) / FULL_DIR / METRICS_FILE
    own.parent.mkdir(parents=True)
    own.write_text("{}")
    assert al_benchmark._own_reference(project, settings, 0)
    assert not al_benchmark._own_reference(project, settings, 1)
    assert not al_benchmark._own_reference(project, {**settings, "full_steps": 60}, 0)
