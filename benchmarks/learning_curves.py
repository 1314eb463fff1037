"""Learning curves of baseline methods x labelling units x seeds on the synthetic rooms.

    .venv/bin/python benchmarks/learning_curves.py --out curves --workers 2
    .venv/bin/pcal report curves/point/* --out curves/point        # one report per unit
    .venv/bin/python benchmarks/learning_curves.py --out curves --units region \
        --methods redal,redal_ent_div -o clusters=12                # ReDAL with fewer clusters

Every run of one seed starts from the same prepared scenes and the same seed budget; budgets are
equal in points across units (by default one room's worth per round, so whole scenes fit), so
units can be compared at equal annotation cost. Runs are resumable: an interrupted run continues
its plan, a finished run is skipped.
``--full`` trains a full-supervision reference per seed (copied into that seed's runs, so
``pcal report`` gives the ratio to it); ``--seed-method seedal`` seeds with SeedAL's scenes.
``-o KEY=VALUE`` options go to the methods whose scorer or selector has them; the budget and the
seed are the script's for every method (not the presets'), so all runs of a seed share round 0.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path


def known_options(method: str) -> set[str]:
    """The option names of a method's scorer and selector."""
    from pcal_cli.acquisition import get_scorer
    from pcal_cli.methods import get_method
    from pcal_cli.selection import get_selector

    preset = get_method(method)
    return {*get_scorer(preset.scorer).options, *get_selector(preset.selector).options}


def run_one(args: tuple) -> str:
    base, out, unit, method, seed, opts = args
    import torch

    torch.set_num_threads(1)
    from pcal_cli.methods import get_method
    from pcal_cli.project import Project
    from pcal_cli.rounds import read_json
    from pcal_cli.steps.round import PLAN_FILE, run_rounds
    from pcal_cli.steps.seed import seed_round
    from pcal_cli.training.supervised import TrainOptions

    stem = method if opts["seed_method"] == "random" else f"{method}+{opts['seed_method']}"
    name = f"{stem}{opts['tag']}_s{seed}"
    run = Path(out) / unit / name
    if (run / PLAN_FILE).is_file() and read_json(run / PLAN_FILE, "round plan").get("done"):
        return f"{unit:6s} {name:16s}: finished earlier, skipped"  # run_rounds would add --rounds more
    if not run.exists():
        shutil.copytree(base, run.with_suffix(".tmp"))
        run.with_suffix(".tmp").rename(run)
    project = Project.open(run)
    began = time.time()
    seed_unit = "scene" if opts["seed_method"] == "seedal" else (opts["seed_unit"] or unit)
    seed_round(project, opts["seed_method"], seed_unit, opts["seed_budget"], seed=seed,
               options={"device": "cpu"})
    options = TrainOptions(cr=opts["cr"], steps=opts["steps"], lr=opts["lr"], device="cpu", seed=seed)
    if opts["reg_weights"]:
        options = replace(options, reg_weights=opts["reg_weights"])
    scorer_options, selector_options = get_method(method).split_options(
        {k: v for k, v in opts["options"].items() if k in known_options(method)})
    run_rounds(project, method, rounds=opts["rounds"], budget=opts["budget"], unit=unit, options=options,
               scorer_options=scorer_options, selector_options=selector_options)
    return f"{unit:6s} {name:16s}: {time.time() - began:.0f} s"


def run_full(args: tuple) -> str:
    """The full-supervision reference of one seed, trained with the runs' recipe."""
    base, out, seed, opts = args
    import torch

    torch.set_num_threads(1)
    from pcal_cli.evaluation.evaluate import evaluate
    from pcal_cli.project import Project
    from pcal_cli.training.supervised import TrainOptions, train

    run = Path(out) / "_full" / f"s{seed}"
    if not run.exists():
        shutil.copytree(base, run.with_suffix(".tmp"))
        run.with_suffix(".tmp").rename(run)
    project = Project.open(run)
    began = time.time()
    train(project, None, TrainOptions(cr=opts["cr"], steps=opts["steps"], lr=opts["lr"], device="cpu", seed=seed),
          resume=True)
    metrics = evaluate(project, None, "test", device="cpu")
    return f"full supervision seed {seed}: mIoU {100 * metrics['miou']:.1f} ({time.time() - began:.0f} s)"


def share_full_references(out: Path) -> None:
    """Copy each seed's full-supervision folder into that seed's runs, for ``pcal report``'s ratio."""
    for full in sorted((out / "_full").glob("s*/full")):
        seed = full.parent.name
        for run in out.glob(f"*/*_{seed}"):
            if run.parent.name != "_full" and not (run / "full").exists():
                shutil.copytree(full, run / "full")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("curves"))
    parser.add_argument("--methods", default="random,entropy,margin")
    parser.add_argument("--units", default="point,region,scene")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scenes", type=int, default=12, help="rooms (a third are test rooms)")
    parser.add_argument("--points", type=int, default=6000, help="points per room")
    parser.add_argument("--seed-budget", default="12.5%")
    parser.add_argument("--budget", default="12.5%", help="per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--cr", type=float, default=0.25)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed-method", default="random", help="random | seedal")
    parser.add_argument("--seed-unit", default=None, help="unit of the random seed (default: the run's unit)")
    parser.add_argument("--full", action="store_true", help="also train a full-supervision reference per seed")
    parser.add_argument("--reg-weights", default=None,
                        help="A,P,S: weights of the hybrid contrastive regulariser (alignment, point InfoNCE, "
                             "sub-prototype InfoNCE) for methods that train with it")
    parser.add_argument("--tag", default="", help="suffix of the run folders (to keep variants apart)")
    parser.add_argument("--option", "-o", action="append", default=[],
                        help="KEY=VALUE scorer/selector option, given to the methods that have it")
    args = parser.parse_args()

    from pcal_cli.options import parse_pairs
    from pcal_cli.prepare import PrepareOptions, prepare_project

    base = args.out / "_prepared"
    if not (base / "pcal.yaml").is_file():
        prepare_project("synthetic", None, base, {"scenes": args.scenes, "points": args.points},
                        PrepareOptions(regions="supervoxel"))
    opts = {"seed_budget": args.seed_budget, "budget": args.budget, "rounds": args.rounds, "steps": args.steps,
            "cr": args.cr, "lr": args.lr, "options": parse_pairs(args.option), "seed_method": args.seed_method,
            "seed_unit": args.seed_unit, "tag": args.tag,
            "reg_weights": tuple(float(w) for w in args.reg_weights.split(",")) if args.reg_weights else None}
    jobs = [(base, args.out, unit, method, seed, opts)
            for seed, unit, method in itertools.product(range(args.seeds), args.units.split(","),
                                                        args.methods.split(","))]
    began = time.time()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        if args.full:
            for line in pool.map(run_full, [(base, args.out, seed, opts) for seed in range(args.seeds)]):
                print(line, flush=True)
        for line in pool.map(run_one, jobs):
            print(line, flush=True)
    share_full_references(args.out)
    print(f"{len(jobs)} runs in {time.time() - began:.0f} s; report each unit with "
          f"'pcal report {args.out}/<unit>/* --out {args.out}/<unit>'")


if __name__ == "__main__":
    main()
