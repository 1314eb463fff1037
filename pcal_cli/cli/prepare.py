"""``pcal prepare DATASET [RAW] -p PROJ``: a raw dataset -> a project directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from pcal_cli.cli.common import ProjectOption, err, out, progress_bar, project_dir
from pcal_cli.errors import PcalError
from pcal_cli.training.profiles import PROFILES
from pcal_cli.catalogue import REGION_KINDS

if TYPE_CHECKING:
    from pcal_cli.prepare import PrepareResult

# option -> the datasets it applies to
DATASET_OPTIONS = {
    "scenes": ("synthetic",),
    "points": ("synthetic",),
    "layout": ("synthetic",),
    "test_area": ("s3dis",),
    "split_file": ("s3dis", "scannet", "semantickitti", "sensaturban", "folder"),
    "frame_step": ("semantickitti",),
    "classes": ("folder",),
    "label_field": ("folder",),
    "channels": ("folder",),
    "ignore_ids": ("folder",),
}

HELP = """Turn a dataset into a project directory of PLY scenes and pcal.yaml.

DATASET is one of: synthetic (procedural rooms, no RAW needed), s3dis, scannet, semantickitti,
sensaturban, folder (any folder of PLY / LAS / LAZ / NPY scenes). Points with NaN or infinite coordinates are
dropped with a count. Labelling regions are computed here and stored in each PLY.
--holdout-area cuts each training scene into <name>_train and <name>_test (quote it in a shell:
'x>650').

Examples:

  pcal prepare synthetic -p demo --scenes 6 --points 40000 --seed 0

  pcal prepare synthetic -p tagged --layout typed

  pcal prepare s3dis ~/data/Stanford3dDataset_v1.2_Aligned_Version -p s3dis --grid 0.04

  pcal prepare folder ~/scans -p mine --classes classes.yaml --regions cells --cell 0.5

  pcal prepare folder ~/tiles -p ign --classes asprs --ignore-ids 64-67 --channels intensity --holdout-area 0.25
"""


def register(app: typer.Typer) -> None:
    app.command("prepare", help=HELP)(prepare)


def prepare(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="synthetic | s3dis | scannet | semantickitti | sensaturban | folder")],
    raw: Annotated[Optional[Path], typer.Argument(help="Raw dataset folder (not for synthetic).",
                                                  show_default=False)] = None,
    project: ProjectOption = None,
    grid: Annotated[Optional[float], typer.Option(help="Grid subsampling cell in metres (default: keep all points).",
                                                  show_default=False)] = None,
    regions: Annotated[str, typer.Option(help=f"Labelling regions: {' | '.join(REGION_KINDS)}.")] = "supervoxel",
    seed_resolution: Annotated[Optional[float], typer.Option(
        help="Supervoxel seed spacing in metres (default: indoor 1.0, outdoor 10).", show_default=False)] = None,
    voxel_resolution: Annotated[Optional[float], typer.Option(
        help="Supervoxel voxel size in metres (default: indoor 0.1, outdoor 0.5).", show_default=False)] = None,
    min_region: Annotated[Optional[int], typer.Option(
        help="Supervoxels under this many points merge into a neighbour (default: 100).", show_default=False)] = None,
    cell: Annotated[Optional[float], typer.Option(help="Grid cell size in metres for --regions cells (default: indoor 0.25).",
                                                  show_default=False)] = None,
    chunks: Annotated[Optional[int], typer.Option(help="Chunks per scene for --regions kmeans (default: 20).",
                                                  show_default=False)] = None,
    voxel_size: Annotated[Optional[float], typer.Option(
        help="Training voxel size in metres written to pcal.yaml (default: the training profile's).",
        show_default=False)] = None,
    profile: Annotated[Optional[str], typer.Option(
        help=f"Training profile written to pcal.yaml: {' | '.join(PROFILES)} (network width, voxel size, steps; "
             "default: the dataset's).", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Random seed (synthetic rooms, k-means regions).")] = 0,
    scenes: Annotated[Optional[int], typer.Option(help="synthetic: number of rooms (default: 6).", show_default=False)] = None,
    points: Annotated[Optional[int], typer.Option(help="synthetic: points per room (default: 40000).",
                                                  show_default=False)] = None,
    layout: Annotated[Optional[str], typer.Option(
        help="synthetic: mixed (every room furnished alike) | typed (offices, lounges, libraries, corridors, "
             "storerooms: rooms hold different classes) (default: mixed).", show_default=False)] = None,
    test_area: Annotated[Optional[int], typer.Option(help="s3dis: the test area (default: 5).", show_default=False)] = None,
    split_file: Annotated[Optional[Path], typer.Option(help="Every dataset but synthetic: YAML or text file "
                                                       "assigning scenes to train / val / test.",
                                                       show_default=False)] = None,
    holdout_area: Annotated[Optional[str], typer.Option(
        help="Cut each training scene into <name>_train and <name>_test: a fraction (0.25 or 25%: the last "
             "quarter of its longer horizontal extent is test) or a threshold on absolute coordinates "
             "('x>650', 'y<6277600').", show_default=False)] = None,
    frame_step: Annotated[Optional[int], typer.Option(help="semantickitti: keep every k-th frame (default: 1).",
                                                      show_default=False)] = None,
    classes: Annotated[Optional[str], typer.Option(help="folder: class names 'a,b,c', asprs (the standard LAS "
                                                   "classification table) or a YAML class map file.",
                                                   show_default=False)] = None,
    ignore_ids: Annotated[Optional[str], typer.Option(help="folder: raw label ids that become ignore, added to "
                                                      "--classes: '64,65' or '64-67'.", show_default=False)] = None,
    channels: Annotated[Optional[str], typer.Option(help="folder: input channels, rgb | intensity | nir | none or a "
                                                    "comma list; every file must have them (default: the channels "
                                                    "every file has).", show_default=False)] = None,
    label_field: Annotated[Optional[str], typer.Option(help="folder: name of the label field in PLY files.",
                                                       show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing project that has no labelling "
                                        "rounds (labels are never deleted).")] = False,
) -> None:
    from pcal_cli.data.datasets.registry import get_dataset
    from pcal_cli.prepare import PrepareOptions, prepare_project

    target = project_dir(ctx, project)
    if target is None:
        raise PcalError("no project given: pass -p/--project PATH or set PCAL_PROJECT")
    get_dataset(dataset)  # an unknown name is an error naming the choices
    given = {"scenes": scenes, "points": points, "layout": layout, "test_area": test_area, "split_file": split_file,
             "frame_step": frame_step, "classes": classes, "label_field": label_field, "channels": channels,
             "ignore_ids": ignore_ids}
    dataset_options = _dataset_options(dataset, given)
    if dataset == "synthetic":
        if raw is not None:
            raise PcalError("the synthetic dataset takes no RAW folder")
        dataset_options["seed"] = seed
    elif raw is None:
        raise PcalError(f"prepare {dataset} needs the RAW dataset folder")
    elif not raw.exists():
        raise PcalError(f"{raw}: no such folder")
    options = PrepareOptions(
        grid=grid,
        regions=regions,
        region_params={"seed_resolution": seed_resolution, "voxel_resolution": voxel_resolution,
                       "min_size": min_region, "cell": cell, "chunks": chunks},
        voxel_size=voxel_size,
        profile=profile,
        seed=seed,
        force=force,
        holdout_area=holdout_area,
    )
    with progress_bar() as progress:
        task = progress.add_task("Preparing scenes", total=None, item="")

        def on_scene(done: int, total: int, name: str) -> None:
            progress.update(task, completed=done, total=total, item=name)

        result = prepare_project(dataset, raw, target, dataset_options, options, on_scene)
    show_summary(result)


def _dataset_options(dataset: str, given: dict) -> dict:
    options = {}
    for key, value in given.items():
        if value is None:
            continue
        if dataset in DATASET_OPTIONS[key]:
            options[key] = value
        else:
            flag = "--" + key.replace("_", "-")
            raise PcalError(f"{flag} does not apply to dataset '{dataset}' (only to {', '.join(DATASET_OPTIONS[key])})")
    return options


def show_summary(result: PrepareResult) -> None:
    """Rich tables: scenes and points per split, then the class histogram per split."""
    config = result.config
    splits = [s for s in ("train", "val", "test") if s in result.splits]
    overview = Table(title=f"pcal project {result.project.root} ({config.dataset})")
    for column in ("split", "scenes", "points", "labelled", "regions"):
        overview.add_column(column, justify="left" if column == "split" else "right")
    for split in splits:
        s = result.splits[split]
        share = 100.0 * s.labelled / s.points if s.points else 0.0
        overview.add_row(split, f"{s.scenes:,}", f"{s.points:,}", f"{share:.1f}%", f"{s.regions:,}")
    out.print(overview)

    classes = Table(title="class histogram (points)")
    classes.add_column("class")
    for split in splits:
        classes.add_column(split, justify="right")
    for k, name in enumerate(config.classes):
        cells = []
        for split in splits:
            s = result.splits[split]
            count = int(s.histogram[k]) if s.histogram is not None else 0
            share = 100.0 * count / s.labelled if s.labelled else 0.0
            cells.append(f"{count:,} ({share:.1f}%)")
        classes.add_row(name, *cells)
    out.print(classes)
    out.print(f"voxel size {config.voxel_size} m, regions: {config.regions.kind} {config.regions.params}, "
              f"input channels: {', '.join(config.channels) or 'none'}")
    training = config.training
    if training:
        out.print(f"training profile {training.get('profile')}: cr {training.get('cr')}, {training.get('steps')} "
                  f"steps from scratch, {training.get('finetune_steps')} per fine-tuned round, "
                  f"{training.get('full_steps')} for the full-supervision reference (pcal.yaml 'training:')")
    for note in result.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
