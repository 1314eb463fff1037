"""WSegPC on the synthetic rooms: scene tags only vs tags + region-point consistency vs full labels.

    .venv/bin/python benchmarks/wsegpc.py --out bench_wsegpc --seeds 3 --steps 150
    .venv/bin/python benchmarks/wsegpc.py --out bench_wsegpc_typed --layout typed   # rooms differ in classes

Per seed, on a copy of one prepared project: the oracle gives every training room its tags, then
stage 1 (multiple-instance loss on the tags), stage 2 (+ region-point consistency, from stage 1),
the pseudo-labels of both stages' networks, and a fresh network (stage 3) trained on each set of
pseudo-labels; a full-supervision network with the same schedule is the reference. Reports
pseudo-label mIoU on the training rooms and network mIoU on the test rooms, mean +- std over
seeds, and writes ``summary.json``. Resumable: every stage is skipped when its files exist.

Stage 2's teacher gives two sets of pseudo-labels: the release's argmax and pcal's
prior-calibrated argmax (``pseudo_calibration``), each with its own fresh network; the "share"
rows give, for each, the largest ratio of a class's share of the test predictions to its share of
the test ground truth (the target: at most 2), and the share of predictions naming a class the
test ground truth does not have.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

ROWS = (
    ("pseudo_tags", "pseudo-labels, tags only (stage 1), train mIoU", 100),
    ("pseudo_none", "pseudo-labels, tags + consistency (stage 2), release argmax, train mIoU", 100),
    ("pseudo_prior", "pseudo-labels, tags + consistency (stage 2), prior-calibrated, train mIoU", 100),
    ("stage1", "stage 1 network (tags only), test mIoU", 100),
    ("stage2", "stage 2 network (tags + consistency), test mIoU", 100),
    ("stage3_none", "fresh network on the release's pseudo-labels, test mIoU", 100),
    ("stage3_prior", "fresh network on the calibrated pseudo-labels (pcal's WSegPC), test mIoU", 100),
    ("share_none", "largest predicted / true share of a class, release pseudo-labels' network, test", 1),
    ("share_prior", "largest predicted / true share of a class, calibrated pseudo-labels' network, test", 1),
    ("absent_none", "% of test predictions naming a class absent from the test truth, release", 100),
    ("absent_prior", "% of test predictions naming a class absent from the test truth, calibrated", 100),
    ("full", "full supervision, test mIoU", 100),
)


def share_ratio(confusion) -> float:
    """The largest ratio of a class's share of the test predictions to its share of the test
    ground truth, over the classes in the ground truth (predictions of absent classes:
    :func:`absent_share`)."""
    import numpy as np

    confusion = np.asarray(confusion, dtype=np.float64)
    truth, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = truth > 0
    return float((predicted[present] / truth[present]).max())


def absent_share(confusion) -> float:
    """The share of the test predictions that name a class absent from the test ground truth."""
    import numpy as np

    confusion = np.asarray(confusion, dtype=np.float64)
    return float(confusion[:, confusion.sum(axis=1) == 0].sum() / confusion.sum())


def run_seed(args: tuple) -> dict:
    base, out, seed, opts = args
    import torch

    torch.set_num_threads(1)
    from pcal_cli.evaluation.evaluate import evaluate
    from pcal_cli.project import Project
    from pcal_cli.steps.tags import oracle_tags
    from pcal_cli.steps.wsegpc import pseudo_label_quality, run_wsegpc, write_pseudo_labels, wsegpc_dir
    from pcal_cli.training.supervised import MODEL_FILE, TrainOptions, train

    run = Path(out) / f"s{seed}"
    if not run.exists():
        shutil.copytree(base, run.with_suffix(".tmp"))
        run.with_suffix(".tmp").rename(run)
    project = Project.open(run)
    began = time.time()
    options = TrainOptions(cr=opts["cr"], steps=opts["steps"], lr=opts["lr"], device="cpu", seed=seed,
                           pseudo_calibration="prior")
    if not (run / "rounds" / "r000").is_dir():
        oracle_tags(project)
    results = {"stage3_prior": run_wsegpc(project, 0, options)}
    stages = wsegpc_dir(project, 0)
    write_pseudo_labels(project, 0, stages / "stage1" / MODEL_FILE, stages / "pseudo_tags", device="cpu",
                        calibration="none")
    write_pseudo_labels(project, 0, stages / "stage2" / MODEL_FILE, stages / "pseudo_none", device="cpu",
                        calibration="none")
    train(project, 0, replace(options, recipe=None), folder=stages / "stage3_none", resume=True,
          labels_from=stages / "pseudo_none" / "labels")
    for name in ("stage1", "stage2", "stage3_none"):
        results[name] = evaluate(project, 0, "test", device="cpu", folder=stages / name)
    for name, folder in (("pseudo_tags", "pseudo_tags"), ("pseudo_none", "pseudo_none"), ("pseudo_prior", "pseudo")):
        results[name] = pseudo_label_quality(project, 0, stages / folder)
    train(project, None, options, resume=True)
    results["full"] = evaluate(project, None, "test", device="cpu")
    for variant in ("none", "prior"):
        results[f"share_{variant}"] = share_ratio(results[f"stage3_{variant}"]["confusion"])
        results[f"absent_{variant}"] = absent_share(results[f"stage3_{variant}"]["confusion"])
    summary = {key: value if isinstance(value, float) else value["miou"] for key, value in results.items()}
    summary["iou"] = {key: value["iou"] for key, value in results.items() if isinstance(value, dict)}
    summary["seconds"] = round(time.time() - began)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench_wsegpc"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scenes", type=int, default=12, help="rooms (a third are test rooms)")
    parser.add_argument("--points", type=int, default=4000, help="points per room")
    parser.add_argument("--layout", default="mixed", help="synthetic layout: mixed | typed (rooms of different "
                        "kinds, so scene tags differ between rooms)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--cr", type=float, default=0.25)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from pcal_cli.prepare import PrepareOptions, prepare_project

    base = args.out / "_prepared"
    if not (base / "pcal.yaml").is_file():
        prepare_project("synthetic", None, base, {"scenes": args.scenes, "points": args.points, "layout": args.layout},
                        PrepareOptions(regions="supervoxel"))
    opts = {"steps": args.steps, "cr": args.cr, "lr": args.lr}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        per_seed = list(pool.map(run_seed, [(base, args.out, seed, opts) for seed in range(args.seeds)]))
    summary = {}
    for key, label, scale in ROWS:
        values = [scale * r[key] for r in per_seed]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        summary[key] = {"label": label, "mean": statistics.mean(values), "std": spread, "values": values}
        print(f"{label:82s} {summary[key]['mean']:5.1f} +- {spread:4.1f}  ({', '.join(f'{v:.1f}' for v in values)})")
    print(f"seconds per seed: {[r['seconds'] for r in per_seed]}")
    summary["per_seed"] = per_seed
    summary["settings"] = {**opts, "scenes": args.scenes, "points": args.points, "layout": args.layout}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
