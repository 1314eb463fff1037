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
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import al_benchmark

    text = al_benchmark.render(record)
    assert "| round | % labelled | `random` | `margin` |" in text and "Convergence check" in text
