"""``pcal compare``: methods x seeds on one project, then ``pcal report PROJ/compare``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pcal_cli.cli.common import ProjectOption, out, progress_bar, project_dir
from pcal_cli.errors import PcalError
from pcal_cli.methods import METHODS
from pcal_cli.project import Project
from pcal_cli.steps.compare import CompareSettings, compare, compare_dir
from pcal_cli.training.supervised import TrainOptions

COMPARE_HELP = f"""Compare methods x seeds on one project, honestly.

For each seed, round 0 is drawn once (--seed-method, --seed-unit, --seed-budget) and shared by
every method, so methods differ only by what they select; each (method, seed) runs --rounds
rounds in PROJ/compare/<method>/s<seed>/ (the scenes are linked, not copied) with the same
training recipe; --full-reference trains a fully supervised model per seed with the same recipe.
Finished runs are skipped and an interrupted run continues, so the command can simply be run
again. --seed-method method lets each method draw its own preset seed instead. Then
'pcal report PROJ/compare' shows the tables and the plot.

Methods: {', '.join(METHODS)}.

Example:

  pcal compare -p demo --methods random,margin,redal --seeds 3 --rounds 4 --steps 300 --cr 0.25
"""


def register(app: typer.Typer) -> None:
    app.command("compare", help=COMPARE_HELP)(compare_command)


def compare_command(
    ctx: typer.Context,
    project: ProjectOption = None,
    methods: Annotated[str, typer.Option(help="Comma-separated method presets.")] = "random,margin",
    seeds: Annotated[int, typer.Option(help="Seeds per method (0, 1, ...).")] = 3,
    rounds: Annotated[int, typer.Option(help="Selection rounds per run.")] = 5,
    budget: Annotated[Optional[str], typer.Option(help="Points per round, as in 'pcal select' (default: each "
                                                  "method's own).", show_default=False)] = None,
    seed_method: Annotated[str, typer.Option(help="random | seedal | method (each method's preset seed).")] = "random",
    seed_unit: Annotated[str, typer.Option(help="Unit of the shared random seed.")] = "region",
    seed_budget: Annotated[str, typer.Option(help="Budget of the shared seed.")] = "3%",
    full_reference: Annotated[bool, typer.Option("--full-reference/--no-full-reference",
                                                 help="Train a fully supervised reference per seed.")] = True,
    backbone: Annotated[str, typer.Option(help="minkunet | spvcnn.")] = "minkunet",
    cr: Annotated[float, typer.Option(help="Width multiplier of the network.")] = 0.5,
    steps: Annotated[int, typer.Option(help="Training steps per round.")] = 1000,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-3,
    batch_size: Annotated[int, typer.Option(help="Scenes per step.")] = 2,
    max_points: Annotated[int, typer.Option(help="Crop training scenes larger than this around a labelled "
                                            "point (as in 'pcal train').")] = 200_000,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
) -> None:
    proj = Project.open(project_dir(ctx, project))
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise PcalError("--methods: name at least one method")
    settings = CompareSettings(methods=names, seeds=seeds, rounds=rounds, budget=budget, seed_method=seed_method,
                               seed_unit=seed_unit, seed_budget=seed_budget, full_reference=full_reference,
                               train=TrainOptions(backbone=backbone, cr=cr, steps=steps, lr=lr,
                                                  batch_size=batch_size, max_points=max_points, device=device))
    with proj.lock("compare"), progress_bar() as progress:
        runs = progress.add_task("Runs", total=None, item="")
        step = progress.add_task("Training", total=None, item="")
        compare(proj, settings, say=lambda text: progress.console.print(text),
                on_run=lambda d, t, name: progress.update(runs, completed=d, total=t, item=name),
                on_step=lambda d, t, loss: progress.update(step, completed=d, total=t, item=f"loss {loss:.3f}"))
    out.print(f"done: {len(names)} method(s) x {seeds} seed(s) in {compare_dir(proj)}; "
              f"pcal report {Path(compare_dir(proj))}")
