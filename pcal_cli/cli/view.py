"""``pcal view``: one self-contained HTML page with an interactive 3D view of a scene in a round."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from pcal_cli.cli.common import ProjectOption, out, progress_bar, project_dir
from pcal_cli.catalogue import VIEW_MAX_POINTS as DEFAULT_MAX_POINTS

VIEW_HELP = f"""Write one HTML file with an interactive 3D view of a scene and an overview of a round.

Buttons colour the points by ground truth, prediction (of the round's model.pt), error (right,
wrong, no ground truth), acquisition score (scores/SCENE.npz, each point gets its unit's score)
and the round's queries (queries.json: queried points large and magenta, the rest dimmed). Below:
the round's IoU per class, the units selected per scene and the learning curve over the rounds.
plotly.js is inlined: the file opens offline in any browser, no server needed.

Scenes above --max-points ({DEFAULT_MAX_POINTS:,}) are subsampled (seeded, so the same page each
time), always keeping every queried point. Default scene: the training scene with the most
queried points in the round; default round: the latest; default file:
PROJ/report/view_rNNN_SCENE.html. Reads the project only; no lock taken.

Examples:

  pcal view -p demo

  pcal view -p demo --round 2 --scene room_003 --out room_003.html
"""


def register(app: typer.Typer) -> None:
    app.command("view", help=VIEW_HELP)(view_command)


def view_command(
    ctx: typer.Context,
    project: ProjectOption = None,
    round_index: Annotated[Optional[int], typer.Option(
        "--round", "-r", help="Round to view (default: the latest).", show_default=False)] = None,
    scene: Annotated[Optional[str], typer.Option(
        "--scene", "-s", help="Scene to view (default: the training scene with the most queried points).",
        show_default=False)] = None,
    out_file: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="HTML file to write, or a folder for the default name "
                            "(default: PROJ/report/view_rNNN_SCENE.html).", show_default=False)] = None,
    max_points: Annotated[int, typer.Option(
        "--max-points", help="Most points drawn; larger scenes are subsampled, keeping every queried point.")
    ] = DEFAULT_MAX_POINTS,
    device: Annotated[str, typer.Option(help="Device of the prediction: auto | cpu | cuda.")] = "auto",
) -> None:
    from pcal_cli.project import Project
    from pcal_cli.view.render import write_view

    proj = Project.open(project_dir(ctx, project))
    with progress_bar() as progress:
        task = progress.add_task("Viewing", total=None, item="")
        result = write_view(proj, round_index, scene, out_file, max_points=max_points, device=device,
                            on_stage=lambda done, total, what: progress.update(task, completed=done, total=total,
                                                                               item=what))
    queried = "" if result.queried_points is None else f", {result.queried_points:,} queried"
    out.print(f"round {result.round}, {escape(result.scene)} ({result.split}): showing {result.shown:,} of "
              f"{result.total_points:,} points{queried}; colourings: {', '.join(result.colourings).lower()}",
              highlight=False)
    for note in result.notes:
        out.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    out.print(f"page: {escape(str(result.path))} ({result.size / 1e6:.1f} MB); open it in a web browser "
              "(works offline)", highlight=False)
