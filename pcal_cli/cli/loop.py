"""``pcal seed``, ``score``, ``select``, ``label`` and ``round``: the active learning loop."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from pcal_cli.cli.common import ProjectOption, err, out, progress_bar, project_dir
from pcal_cli.catalogue import DEFAULT_CELL, SCORER_NAMES, SEED_METHODS, SELECTOR_NAMES, UNITS
from pcal_cli.errors import PcalError
from pcal_cli.methods import METHODS, get_method
from pcal_cli.options import parse_pairs

if TYPE_CHECKING:
    from pcal_cli.project import Project

RoundOption = Annotated[Optional[int], typer.Option("--round", "-r", help="Round number (default: latest).",
                                                    show_default=False)]
UnitOption = Annotated[Optional[str], typer.Option(help=f"Labelling unit: {' | '.join(UNITS)}.", show_default=False)]
CellOption = Annotated[float, typer.Option(help="Cell size in metres for --unit cell.")]
BudgetHelp = "Points to label: '3%' of the training points, '20000' points, or '20/scene' units per scene."
DeviceOption = Annotated[str, typer.Option(help="auto | cpu | cuda.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Redo the step even if its files exist.")]
OptionList = Annotated[Optional[list[str]], typer.Option(
    "--option", "-o", help="KEY=VALUE option of the scorer or selector, repeatable (see docs/methods.md).",
    show_default=False)]

label_app = typer.Typer(help="Reveal labels with the oracle (--oracle), or export the queries for a person "
                        "and import their labels.", invoke_without_command=True, no_args_is_help=False)


def register(app: typer.Typer) -> None:
    app.command("seed", help=SEED_HELP)(seed_command)
    app.command("score", help=SCORE_HELP)(score_command)
    app.command("select", help=SELECT_HELP)(select_command)
    app.add_typer(label_app, name="label")
    app.command("round", help=ROUND_HELP)(round_command)


def _open(ctx: typer.Context, project: Path | None) -> Project:
    from pcal_cli.project import Project

    return Project.open(project_dir(ctx, project))


SEED_HELP = f"""Pick the initial labelled set and reveal it as round 0 (ledger source 'seed').

Methods: {', '.join(SEED_METHODS)}. random draws units at random; seedal chooses whole scenes
that are diverse in themselves and from each other (SeedAL), from descriptors of the points
(default), a pcal model (--features model:PATH) or your image features (--features images:DIR,
one DIR/<scene>.npy of shape [M, D] per scene), and writes rounds/r000/seed.json. The budget is
counted in points. oracle-balanced reproduces JoPro's seed: in every scene, a percentage of the
points of each class present (at least one), chosen from the ground truth, so it is an oracle
that a real annotation team cannot use.

Examples:

  pcal seed -p demo --unit region --budget 3%

  pcal seed -p demo --unit point --budget 20/scene --seed 1

  pcal seed -p demo --method seedal --budget 3%
"""


def seed_command(
    ctx: typer.Context,
    project: ProjectOption = None,
    method: Annotated[str, typer.Option(help=f"{' | '.join(SEED_METHODS)}.")] = "random",
    unit: Annotated[Optional[str], typer.Option(help=f"Labelling unit: {' | '.join(UNITS)} (default: region; "
                                                "scene for seedal).", show_default=False)] = None,
    budget: Annotated[str, typer.Option(help=BudgetHelp)] = "3%",
    cell: CellOption = DEFAULT_CELL,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    features: Annotated[str, typer.Option(help="seedal: points | model:PATH | images:DIR.")] = "points",
    solver: Annotated[str, typer.Option(help="seedal: milp (HiGHS, greedy fallback) | greedy.")] = "milp",
    time_limit: Annotated[float, typer.Option(help="seedal: seconds for the MILP solver.")] = 30.0,
    top_pairs: Annotated[Optional[int], typer.Option(help="seedal: candidate scene pairs kept (default: 50 "
                                                     "per scene).", show_default=False)] = None,
    device: DeviceOption = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace round 0 when no later round exists.")] = False,
) -> None:
    from pcal_cli.rounds import read_json
    from pcal_cli.steps.seed import SEED_FILE, seed_round

    proj = _open(ctx, project)
    seed_options = {"features": features, "solver": solver, "time_limit": time_limit, "top_pairs": top_pairs,
                    "device": device}  # each seed method takes the ones it knows
    with proj.lock("seed"):
        commit = seed_round(proj, method, unit, budget, seed, cell, force=force, options=seed_options)
    if commit.skipped:
        err.print("round 0 exists: skipped (pass --force to replace it)")
        return
    out.print(f"round 0: {commit.points:,} points labelled in {len(commit.scenes)} scene(s) "
              f"({method}, budget {budget})")
    if (proj.round_dir(0) / SEED_FILE).is_file():  # a seed method that reports its choice (SeedAL)
        report = read_json(proj.round_dir(0) / SEED_FILE, "seed report")
        gap = "" if report.get("gap") is None else f", gap {report['gap']:.3g}"
        out.print(f"SeedAL objective {report['objective']:.4f} ({report['solver']}, {report['status']}{gap}); "
                  f"scenes: {', '.join(e['scene'] for e in report['scenes'])}")


SCORE_HELP = f"""Score the unlabelled pool of a round with its model.

Scorers: {', '.join(SCORER_NAMES)}. Writes rounds/rNNN/scores/<scene>.npz; scenes already scored are
skipped, so an interrupted run continues. --shard i/N scores only the i-th of N slices of the
scene list, so several processes or machines can share the work.

Example:

  pcal score -p demo --scorer margin --unit region
"""


def score_command(
    ctx: typer.Context,
    project: ProjectOption = None,
    round_index: RoundOption = None,
    scorer: Annotated[str, typer.Option(help="Acquisition function.")] = "margin",
    unit: Annotated[str, typer.Option(help=f"Labelling unit: {' | '.join(UNITS)}.")] = "region",
    cell: CellOption = DEFAULT_CELL,
    aggregate: Annotated[str, typer.Option(help="A unit's score from its points: mean | max.")] = "mean",
    seed: Annotated[int, typer.Option(help="Seed for random scores and dropout masks.")] = 0,
    shard: Annotated[Optional[str], typer.Option(help="Score only shard i of N, as 'i/N'.", show_default=False)] = None,
    features: Annotated[bool, typer.Option("--features", help="Also store pooled unit features "
                                           "(needed by --selector diversity and kcenter).")] = False,
    keep: Annotated[Optional[int], typer.Option(help="Store only the best KEEP units of each scene (the "
                                                "candidates; keeps point-unit scores small).",
                                                show_default=False)] = None,
    option: OptionList = None,
    device: DeviceOption = "auto",
    force: ForceOption = False,
) -> None:
    from pcal_cli.rounds import resolve_round
    from pcal_cli.steps.score import ScoreSettings, score_round

    proj = _open(ctx, project)
    target = resolve_round(proj, round_index)
    settings = ScoreSettings(scorer=scorer, unit=unit, cell=cell, aggregate=aggregate, seed=seed,
                             features=features, options=parse_pairs(option or []), keep=keep)
    # shards run side by side, each writing only its own scenes' files: they take no lock
    with proj.lock("score") if shard is None else nullcontext(), progress_bar() as progress:
        task = progress.add_task(f"Scoring round {target}", total=None, item="")
        scored = score_round(proj, target, settings, device=device, shard=shard, force=force,
                             on_scene=lambda d, t, n: progress.update(task, completed=d, total=t, item=n))
    out.print(f"round {target}: scored {scored} scene(s) with {scorer} per {unit}")


SELECT_HELP = """Select the next queries under a point budget and write rounds/rNNN/queries.json.

Units are ranked by score; a unit that would overshoot the budget is skipped and smaller ones
further down may still fill it, so the budget is never exceeded. Labelled units are never asked
again.

Example:

  pcal select -p demo --budget 1%
"""


def select_command(
    ctx: typer.Context,
    project: ProjectOption = None,
    round_index: RoundOption = None,
    budget: Annotated[str, typer.Option(help=BudgetHelp)] = "1%",
    selector: Annotated[str, typer.Option(help=" | ".join(SELECTOR_NAMES) + ".")] = "topk",
    seed: Annotated[int, typer.Option(help="Seed for randomised selectors.")] = 0,
    option: OptionList = None,
    force: ForceOption = False,
) -> None:
    from pcal_cli.rounds import resolve_round
    from pcal_cli.steps.select import select_round

    proj = _open(ctx, project)
    target = resolve_round(proj, round_index)
    with proj.lock("select"):
        queries = select_round(proj, target, budget, selector=selector, seed=seed,
                               options=parse_pairs(option or []), force=force)
    show_queries(queries)


def show_queries(queries: dict, limit: int = 15) -> None:
    """What was chosen: scene, unit, points, score (no classes: the round does not know them)."""
    table = Table(title=f"round {queries['round']}: {len(queries['queries'])} {queries['unit']}(s), "
                        f"{queries['spent_points']:,} of {queries['budget_points']:,} budget points")
    for column in ("rank", "scene", queries["unit"], "points", "score"):
        table.add_column(column, justify="left" if column == "scene" else "right")
    for query in queries["queries"][:limit]:
        table.add_row(str(query["rank"]), query["scene"], str(query["unit"]), f"{query['points']:,}",
                      f"{query['score']:.4f}")
    if len(queries["queries"]) > limit:
        table.add_row("...", f"{len(queries['queries']) - limit} more", "", "", "")
    out.print(table)


@label_app.callback()
def label_command(
    ctx: typer.Context,
    project: ProjectOption = None,
    round_index: RoundOption = None,
    oracle: Annotated[bool, typer.Option("--oracle", help="Reveal the ground truth of the queries.")] = False,
    unit: Annotated[Optional[str], typer.Option(help="tags: the oracle tags every training scene with the "
                                                "classes present (WSegPC) instead of answering queries.",
                                                show_default=False)] = None,
) -> None:
    """Reveal labels with the oracle (--oracle), or export queries for a person and import their labels."""
    if project is not None:
        ctx.obj["project"] = project
    if ctx.invoked_subcommand is not None:
        ctx.obj["round"] = round_index
        return
    from pcal_cli.rounds import latest_round, resolve_round
    from pcal_cli.steps.label import oracle_round, oracle_target
    from pcal_cli.steps.tags import oracle_tags

    if not oracle:
        raise PcalError("say how to label: --oracle, or 'pcal label export' / 'pcal label import'")
    if unit not in (None, "tags"):
        raise PcalError(f"--unit {unit}: the oracle answers the round's queries; only --unit tags is special")
    proj = _open(ctx, project)
    if unit == "tags":
        with proj.lock("label --oracle --unit tags"):
            commit = oracle_tags(proj)
        out.print(f"round {commit.round}: {len(commit.scenes)} scene(s) tagged by the oracle (0 points)")
        return
    target = resolve_round(proj, round_index) if round_index is not None else oracle_target(proj, latest_round(proj))
    with proj.lock("label --oracle"):
        commit = oracle_round(proj, target)
    if commit.skipped:
        err.print(f"round {commit.round} exists: skipped")
        return
    out.print(f"round {commit.round}: {commit.points:,} points labelled by the oracle in {len(commit.scenes)} scene(s)")


ROUND_HELP = f"""Run whole active learning rounds: train, evaluate, score, select, label.

Methods: {', '.join(METHODS)} (docs/methods.md). Without round 0 the method's own seed
is drawn first (--seed-method overrides it). Each step skips what the round already has, so an
interrupted run continues where it stopped. After the last round the newly labelled set is
trained and evaluated too (--no-final skips it). --no-label stops after selecting, for a person
to label the queries with 'pcal label export' / 'pcal label import'.

Examples:

  pcal round -p demo --method margin --rounds 3 --budget 1% --steps 300

  pcal round -p demo --method redal --rounds 4 -o decay=0.9 -o clusters=100

  pcal round -p demo --method wsegpc --image-features feats/

--method wsegpc trains on scene tags (stages 1-3 in PROJ/wsegpc/); --tag-drop and
--image-features DIR (DIR/<scene>.npy: per-point 2D features [N, D], NaN rows for unseen points)
apply to its stages 1 and 2, as in 'pcal train --recipe scene-tags'.
"""


def round_command(
    ctx: typer.Context,
    project: ProjectOption = None,
    method: Annotated[str, typer.Option(help="A method preset.")] = "margin",
    rounds: Annotated[int, typer.Option(help="How many rounds to run.")] = 1,
    budget: Annotated[Optional[str], typer.Option(help=BudgetHelp + " Per round (default: the method's).",
                                                  show_default=False)] = None,
    seed_method: Annotated[Optional[str], typer.Option(help="Seed method when round 0 does not exist yet "
                                                       "(default: the method's).", show_default=False)] = None,
    seed_budget: Annotated[Optional[str], typer.Option(help="Seed budget when round 0 does not exist yet "
                                                       "(default: the method's).", show_default=False)] = None,
    option: OptionList = None,
    init: Annotated[Optional[str], typer.Option(help="Start training from this checkpoint, or 'wsegpc' for the "
                                                "project's WSegPC network.", show_default=False)] = None,
    unit: UnitOption = None,
    cell: CellOption = DEFAULT_CELL,
    label: Annotated[bool, typer.Option("--label/--no-label", help="Label with the oracle after selecting.")] = True,
    final: Annotated[bool, typer.Option("--final/--no-final", help="Train and evaluate the last round.")] = True,
    backbone: Annotated[Optional[str], typer.Option(help="minkunet | spvcnn (default: the training profile's).",
                                                    show_default=False)] = None,
    cr: Annotated[Optional[float], typer.Option(help="Width multiplier of the network (default: the profile's).",
                                                show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps of a round trained from scratch (default: the "
                                                 "profile's).", show_default=False)] = None,
    finetune_steps: Annotated[Optional[int], typer.Option(help="Training steps of a round that starts from the "
                                                          "previous round's model (default: the profile's).",
                                                          show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (default: the profile's).",
                                                show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Scenes per step (default: the profile's).",
                                                      show_default=False)] = None,
    warm_start: Annotated[Optional[bool], typer.Option(
        "--warm-start/--no-warm-start", help="Start each round from the previous model (default: the method's).",
        show_default=False)] = None,
    semi: Annotated[Optional[str], typer.Option(help="Training recipe: none | teacher-student "
                                                "(default: the method's).", show_default=False)] = None,
    reg: Annotated[Optional[str], typer.Option(help="Training regulariser: none | hybrid-contrastive "
                                               "(default: the method's).", show_default=False)] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between resumable partial checkpoints.")] = 100,
    tag_drop: Annotated[float, typer.Option(help="wsegpc: probability of dropping each tagged floor, ceiling or "
                                            "wall surface, with its tag, from a training view.")] = 0.5,
    tag_warmup: Annotated[Optional[float], typer.Option(
        help="wsegpc: the linear ramp from 0 of stage 1's scene-tag weight and stage 2's consistency weight, a "
        "fraction < 1 of the stage's steps or steps (default: the release's share, 0.04 and 0.08).",
        show_default=False)] = None,
    pseudo_calibration: Annotated[str, typer.Option(
        help="wsegpc: stage 3's pseudo-labels, prior (the argmax of each class's score divided by its mean over "
        "the scenes tagged with it) | none (the release's argmax).")] = "prior",
    image_features: Annotated[Optional[Path], typer.Option(
        "--image-features", metavar="DIR", help="wsegpc: cross-modal guidance from DIR/<scene>.npy, per-point 2D "
        "features [N, D] (NaN rows: unseen points).", show_default=False)] = None,
    device: DeviceOption = "auto",
    seed: Annotated[int, typer.Option(help="Seed for training and selection.")] = 0,
) -> None:
    from pcal_cli.steps.round import run_rounds
    from pcal_cli.training.supervised import profile_options

    proj = _open(ctx, project)
    if rounds < 1:
        raise PcalError("--rounds must be at least 1")
    scorer_options, selector_options = get_method(method).split_options(parse_pairs(option or []))
    options = profile_options(proj, dict(
        backbone=backbone, cr=cr, steps=steps, finetune_steps=finetune_steps, lr=lr, batch_size=batch_size,
        warm_start=warm_start, checkpoint_every=checkpoint_every, device=device, seed=seed, semi=semi, reg=reg,
        init=init, tag_drop=tag_drop, tag_warmup=tag_warmup, pseudo_calibration=pseudo_calibration,
        image_features=None if image_features is None else str(image_features.resolve())))
    with proj.lock(f"round --method {method}"), progress_bar() as progress:
        task = progress.add_task("Training", total=None, item="")

        def on_step(done: int, total: int, loss: float) -> None:
            progress.update(task, completed=done, total=total, item=f"loss {loss:.3f}")

        last = run_rounds(proj, method, rounds=rounds, budget=budget, unit=unit, cell=cell, options=options,
                          label=label, final=final, scorer_options=scorer_options,
                          selector_options=selector_options, seed_method=seed_method,
                          seed_budget=seed_budget,
                          say=lambda text: progress.console.print(text),
                          on_step=on_step)
    out.print(f"done: latest round {last} ({options.backbone} cr {options.cr}, method {method})")


@label_app.command("import-tags", help="""Import scene-level tags (the classes present in each scene) as the next
round (WSegPC). FILE is CSV ('scene,classes' with classes separated by ';' or '|', or a header
'scene,<class>,...' with 0/1 columns) or YAML (scene: [class, ...]). Unknown scenes or classes are
refused with the closest name; tags only grow.

Example:

  pcal label import-tags -p demo tags.csv
""")
def label_import_tags_command(
    ctx: typer.Context,
    tags_file: Annotated[Path, typer.Argument(help="CSV or YAML file of scene tags.")],
    project: ProjectOption = None,
) -> None:
    from pcal_cli.steps.tags import import_tags

    proj = _open(ctx, project)
    with proj.lock("label import-tags"):
        commit = import_tags(proj, tags_file)
    out.print(f"round {commit.round}: tags imported for {len(commit.scenes)} scene(s) (0 points)")


@label_app.command("export", help="""Write the queried scenes for a person to label (CloudCompare PLY or LAS).

Each file holds the whole scene with fields scalar_pid, scalar_query (1 = to label) and
scalar_Classification (known labels; 255 = to label, 254 = not asked), plus manifest.json with
the classes, colours and SHA-256 of every file. See docs/labelling.md.

Example:

  pcal label export -p demo --out demo/labelling
""")
def label_export_command(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the files to.")],
    project: ProjectOption = None,
    fmt: Annotated[str, typer.Option("--format", help="ply | las.")] = "ply",
    with_predictions: Annotated[bool, typer.Option("--with-predictions",
                                                   help="Add scalar_pred from the round's model.")] = False,
    device: DeviceOption = "auto",
) -> None:
    from pcal_cli.annotation import export_queries
    from pcal_cli.rounds import resolve_round

    proj = _open(ctx, project)
    target = resolve_round(proj, ctx.obj.get("round"))
    predictions = _round_predictions(proj, target, device) if with_predictions else None
    with proj.lock("label export"):
        manifest = export_queries(proj, target, out_dir, fmt=fmt, predictions=predictions)
    still = f" (still open after round {manifest['labels_round']})" if "labels_round" in manifest else ""
    table = Table(title=f"round {manifest['round']}: queries{still} exported to {out_dir}")
    for column in ("file", "points", "to label"):
        table.add_column(column, justify="left" if column == "file" else "right")
    for entry in manifest["scenes"].values():
        table.add_row(entry["file"], f"{entry['points']:,}", f"{entry['query_points']:,}")
    out.print(table)
    out.print(f"label them, save as binary PLY under the same names, then: pcal label import -p {proj.root} {out_dir}")


def _round_predictions(project: Project, round_index: int, device: str) -> dict:

    from pcal_cli.annotation.batch import batch_origin
    from pcal_cli.annotation.export import lazy_query_scenes
    from pcal_cli.training.checkpoint import load_model
    from pcal_cli.training.inference import predict_scene
    from pcal_cli.training.supervised import MODEL_FILE, resolve_device

    torch_device = resolve_device(device)
    model, state = load_model(project.round_dir(round_index) / MODEL_FILE, torch_device,
                              classes=project.config.classes, channels=project.config.channels)
    ckpt = state["config"]
    return {name: predict_scene(model, asked.scene, ckpt["channels"], ckpt["voxel_size"], ckpt["num_classes"],
                                torch_device).point_labels
            for name, asked in lazy_query_scenes(project, batch_origin(project, round_index)).items()}


@label_app.command("import", help="""Import a person's labelled files as the next round (ledger source 'import').

Points are matched by scalar_pid (or by the nearest point within 1 mm). Every query point must
hold a class id; with --partial, the points left at 255 (or empty) stay queried and the labelled
ones go in now: import the same folder again, completed, to add the rest as a further round.
Changes to labels known before are refused unless --allow-relabel. Any problem is one clear
error and nothing is written; an import that adds nothing says why and writes nothing.

Examples:

  pcal label import -p demo demo/labelling

  pcal label import -p demo demo/labelling --partial
""")
def label_import_command(
    ctx: typer.Context,
    in_dir: Annotated[Path, typer.Argument(help="The folder of labelled files (with manifest.json).")],
    project: ProjectOption = None,
    allow_relabel: Annotated[bool, typer.Option("--allow-relabel",
                                                help="Accept corrections of labels known before.")] = False,
    partial: Annotated[bool, typer.Option("--partial", help="Import the labelled points now; points left at 255 "
                                          "stay queried for a later import.")] = False,
) -> None:
    from pcal_cli.annotation import MANIFEST, import_labels
    from pcal_cli.rounds import latest_round, read_json, resolve_round

    proj = _open(ctx, project)
    round_index = ctx.obj.get("round")
    if round_index is None:
        manifest = in_dir / MANIFEST
        round_index = read_json(manifest, "labelling manifest")["round"] if manifest.is_file() else latest_round(proj)
    target = resolve_round(proj, round_index)
    with proj.lock("label import"):
        commit = import_labels(proj, target, in_dir, allow_relabel=allow_relabel, partial=partial)
    if commit.skipped:
        err.print(commit.note, markup=False, highlight=False, soft_wrap=True)
        return
    out.print(f"round {commit.round}: {commit.points:,} points imported in {len(commit.scenes)} scene(s)")
    if commit.open_points:
        out.print(f"{commit.open_points:,} point(s) of the batch are still to label: finish them in {in_dir} and run "
                  f"'pcal label import -p {proj.root} {in_dir}' again", markup=False, highlight=False, soft_wrap=True)
