"""``pcal train`` and ``pcal evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from pcal_cli.cli.common import ProjectOption, err, out, progress_bar, project_dir
from pcal_cli.errors import PcalError

TRAIN_HELP = """Train a segmentation network on the labels known in a round.

Reads rounds/rNNN/labels/ only (never the ground truth in the PLYs) and writes
rounds/rNNN/model.pt with the resolved settings. --full trains on all ground truth of the
training split instead: the full-supervision reference, written to full/model.pt. The last step
is kept; no checkpoint is ever chosen on the evaluation split. A finished round is skipped unless
--force; an interrupted run continues with --resume.

Examples:

  pcal train -p demo --full --steps 600

  pcal train -p demo --round 2 --backbone spvcnn --cr 0.5 --warm-start

  pcal train -p demo --recipe scene-tags --image-features feats/

WSegPC's scene-tag recipes drop each tagged floor, ceiling or wall surface (every region with
70% of its points within 3 cm of that face's plane, so objects recessed into a wall stay) from a
training view,
with its tag, with probability --tag-drop. --image-features DIR adds cross-modal guidance from
your 2D features: DIR/<scene>.npy per tagged training scene, a float array [N, D] with one row
per point of the scene's PLY in file order (D the same for every scene), a row of NaN for a
point no image sees (a relative DIR is taken from the current directory).
"""

EVALUATE_HELP = """Evaluate a round's model on the val or test split.

Predictions go from voxels back to every point; one confusion matrix over the whole split gives
mIoU (mean over the classes present in the ground truth; a class that is only predicted scores
0 in the table but is not averaged), per-class IoU and overall accuracy, written to
rounds/rNNN/metrics.json (full/metrics.json with --full).

Examples:

  pcal evaluate -p demo --full

  pcal evaluate -p demo --round 2 --split test --save-predictions
"""


def register(app: typer.Typer) -> None:
    app.command("train", help=TRAIN_HELP)(train_command)
    app.command("evaluate", help=EVALUATE_HELP)(evaluate_command)


RoundOption = Annotated[Optional[int], typer.Option("--round", "-r", help="Round number (default: latest).",
                                                    show_default=False)]
FullOption = Annotated[bool, typer.Option("--full", help="The full-supervision reference (all training ground truth).")]
DeviceOption = Annotated[str, typer.Option(help="auto | cpu | cuda.")]


def train_command(
    ctx: typer.Context,
    project: ProjectOption = None,
    round_index: RoundOption = None,
    full: FullOption = False,
    backbone: Annotated[Optional[str], typer.Option(help="minkunet | spvcnn (default: the profile's, minkunet).",
                                                    show_default=False)] = None,
    cr: Annotated[Optional[float], typer.Option(help="Width multiplier of the network (1.0 = published size; "
                                                "default: the profile's).", show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimiser steps (default: the profile's steps, full_steps "
                                                 "with --full).", show_default=False)] = None,
    finetune_steps: Annotated[Optional[int], typer.Option(help="Steps of a --warm-start round (default: the "
                                                          "profile's finetune_steps).", show_default=False)] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Passes over the labelled scenes (overrides --steps).",
                                                    show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (cosine schedule with warm-up; default: "
                                                "the profile's).", show_default=False)] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="adamw | sgd (default: adamw).", show_default=False)] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay (default: 1e-4).",
                                                          show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Scenes per step (default: the profile's).",
                                                      show_default=False)] = None,
    max_points: Annotated[Optional[int], typer.Option(help="Crop scenes larger than this around a labelled point "
                                                      "(default: the profile's).", show_default=False)] = None,
    device: DeviceOption = "auto",
    seed: Annotated[int, typer.Option(help="Seed for weights, sampling and augmentation.")] = 0,
    warm_start: Annotated[bool, typer.Option("--warm-start", help="Start from the previous round's model.")] = False,
    semi: Annotated[str, typer.Option(help="Training recipe: none | teacher-student (HPAL's mean teacher).")] = "none",
    ts_evaluate: Annotated[str, typer.Option(help="teacher-student: the network saved and evaluated, student (as "
                                             "the paper) | teacher.")] = "student",
    ts_elastic: Annotated[bool, typer.Option(
        "--ts-elastic/--no-ts-elastic", help="teacher-student: elastic distortion in the student's strong view "
        "(HPAL's release); --no-ts-elastic leaves it out.")] = True,
    ts_kl: Annotated[str, typer.Option(help="teacher-student: KL normalisation, class-mean (HPAL's release: "
                                       "1/C of the per-point KL) | row-mean.")] = "class-mean",
    ts_ramp: Annotated[float, typer.Option(help="teacher-student: the consistency weight ramps up from 0 and "
                                           "pseudo-labels wait for this part of the steps (a fraction < 1, or "
                                           "steps; 0: constant weights as the release).")] = 0.3,
    reg: Annotated[str, typer.Option(help="Regulariser: none | hybrid-contrastive (JoPro).")] = "none",
    recipe: Annotated[str, typer.Option(help="supervised | scene-tags | scene-tags-consistency (WSegPC, on the "
                                        "round's tags).")] = "supervised",
    init: Annotated[Optional[str], typer.Option(help="Start from this checkpoint (same backbone and width).",
                                                show_default=False)] = None,
    tag_drop: Annotated[float, typer.Option(help="Scene-tag recipes: probability of dropping each tagged floor, "
                                            "ceiling or wall surface, with its tag, from a view.")] = 0.5,
    tag_warmup: Annotated[Optional[float], typer.Option(
        help="Scene-tag recipes: the linear ramp from 0 of the scene-tag and cross-modal weights (scene-tags) or "
        "of the consistency weight (scene-tags-consistency), a fraction < 1 of the steps or steps (default: the "
        "release's share, 0.04 and 0.08).", show_default=False)] = None,
    image_features: Annotated[Optional[Path], typer.Option(
        "--image-features", metavar="DIR", help="Scene-tag recipes: cross-modal guidance from DIR/<scene>.npy, "
        "per-point 2D features [N, D] (NaN rows: unseen points).", show_default=False)] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between resumable partial checkpoints.")] = 100,
    precision: Annotated[str, typer.Option(help="fp32 | bf16 (mixed precision on CPU or CUDA, any recipe) | "
                                                "fp16 (CUDA, supervised recipe, loss scaling).")] = "fp32",
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Retrain even if model.pt exists.")] = False,
) -> None:
    from pcal_cli.project import Project
    from pcal_cli.rounds import resolve_round
    from pcal_cli.training import distributed
    from pcal_cli.training.supervised import profile_options, train

    proj = Project.open(project_dir(ctx, project))
    if full and round_index is not None:
        raise PcalError("--full and --round exclude each other")
    target = None if full else resolve_round(proj, round_index)
    options = profile_options(proj, dict(
        backbone=backbone, cr=cr, steps=steps, finetune_steps=finetune_steps, epochs=epochs, lr=lr,
        optimizer=optimizer, weight_decay=weight_decay, batch_size=batch_size, max_points=max_points,
        device=device, seed=seed, warm_start=warm_start, checkpoint_every=checkpoint_every, semi=semi,
        ts_evaluate=ts_evaluate, ts_elastic=ts_elastic, ts_kl=ts_kl, ts_ramp=ts_ramp, reg=reg, recipe=recipe, init=init, tag_drop=tag_drop,
        tag_warmup=tag_warmup, image_features=None if image_features is None else str(image_features.resolve()), precision=precision),
        full=full)
    what = "full supervision" if target is None else f"round {target}"
    if distributed.rank() != 0:  # under torchrun: rank 0 holds the lock, shows progress and reports
        train(proj, target, options, resume=resume, force=force)
        return
    with proj.lock("train"), progress_bar() as progress:
        task = progress.add_task(f"Training ({what})", total=None, item="")

        def on_step(done: int, total: int, loss: float) -> None:
            progress.update(task, completed=done, total=total, item=f"loss {loss:.3f}")

        result = train(proj, target, options, resume=resume, force=force, on_step=on_step)
    if result.skipped:
        err.print(f"{result.path} exists: skipped (pass --force to retrain)")
        return
    workers = distributed.launched_world_size()
    table = Table(title=f"trained {what}: {result.path}" + (f" ({workers} processes)" if workers > 1 else ""))
    for column in ("backbone", "steps", "final loss", "labelled points", "scenes", "seconds"):
        table.add_column(column, justify="right")
    resumed = f" (resumed at {result.resumed_from})" if result.resumed_from else ""
    table.add_row(f"{options.backbone} cr {options.cr}", f"{result.steps}{resumed}", f"{result.final_loss:.4f}",
                  f"{result.labelled_points:,}", str(result.labelled_scenes), f"{result.seconds:.1f}")
    out.print(table)


def evaluate_command(
    ctx: typer.Context,
    project: ProjectOption = None,
    round_index: RoundOption = None,
    full: FullOption = False,
    split: Annotated[str, typer.Option(help="val | test.")] = "test",
    device: DeviceOption = "auto",
    save_predictions: Annotated[bool, typer.Option("--save-predictions",
                                                   help="Write predictions/<scene>.ply (label = prediction, "
                                                   "coloured by class) beside the model.")] = False,
    pseudo: Annotated[bool, typer.Option("--pseudo", help="Score WSegPC's pseudo-labels of the round against the "
                                         "training split's ground truth instead.")] = False,
    shard: Annotated[Optional[str], typer.Option(help="Evaluate only shard i of N ('i/N'), writing a partial "
                                                 "confusion matrix; then --merge.", show_default=False)] = None,
    merge: Annotated[bool, typer.Option("--merge", help="Sum the shards' confusion matrices into metrics.json.")] = False,
) -> None:
    from pcal_cli.evaluation.evaluate import evaluate, merge_shards
    from pcal_cli.project import Project
    from pcal_cli.rounds import resolve_round

    proj = Project.open(project_dir(ctx, project))
    if pseudo:
        from pcal_cli.steps.wsegpc import pseudo_label_quality

        metrics = pseudo_label_quality(proj, resolve_round(proj, round_index))
        out.print(f"[bold]pseudo-labels of round {metrics['round']}[/] on train ({metrics['points']:,} points): "
                  f"mIoU [bold]{_pct(metrics['miou'])}[/], OA {_pct(metrics['oa'])}")
        return
    if full and round_index is not None:
        raise PcalError("--full and --round exclude each other")
    target = None if full else resolve_round(proj, round_index)
    if shard is not None and merge:
        raise PcalError("--shard and --merge exclude each other: evaluate every shard, then merge once")
    if shard is not None:  # shards run side by side, each writing only its own part: no lock
        with progress_bar() as progress:
            task = progress.add_task(f"Evaluating shard {shard} of {split}", total=None, item="")
            part = evaluate(proj, target, split, device=device, save_predictions=save_predictions, shard=shard,
                            on_scene=lambda d, t, n: progress.update(task, completed=d, total=t, item=n))
        out.print(f"shard {shard}: {len(part['scenes'])} scene(s) evaluated; when every shard is done: "
                  f"pcal evaluate -p {proj.root} --merge --split {split}")
        return
    with proj.lock("evaluate"), progress_bar() as progress:
        task = progress.add_task(f"Evaluating on {split}", total=None, item="")
        if merge:
            metrics = merge_shards(proj, target, split)
        else:
            metrics = evaluate(proj, target, split, device=device, save_predictions=save_predictions,
                               on_scene=lambda d, t, n: progress.update(task, completed=d, total=t, item=n))
    what = "full supervision" if target is None else f"round {target}"
    out.print(f"[bold]{what}[/] on {split}: mIoU [bold]{_pct(metrics['miou'])}[/], OA {_pct(metrics['oa'])}, "
              f"mAcc {_pct(metrics['macc'])}; labelled {metrics['labelled_percent']:.3f}% of training points")
    table = Table(title="IoU per class")
    table.add_column("class")
    table.add_column("IoU", justify="right")
    for name, value in metrics["iou"].items():
        table.add_row(name, _pct(value))
    out.print(table)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f}"
