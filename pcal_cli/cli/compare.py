"""``pcal compare``: methods x seeds on one project, then ``pcal report PROJ/compare``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pcal_cli.cli.common import ProjectOption, out, progress_bar, project_dir
from pcal_cli.errors import PcalError
from pcal_cli.methods import METHODS
from pcal_cli.catalogue import DEFAULT_BUDGET

COMPARE_HELP = f"""Compare methods x seeds on one project, fairly by construction.

For each seed, round 0 is drawn once (--seed-method, --seed-unit, --seed-budget), trained and
evaluated once, and shared by every method, so methods differ only by what they select and how
they train afterwards. Every method spends the same --budget of points per round (one budget for
all; a comma list such as 0.5%,1%,1%,2% gives the rounds' budgets in turn) and follows one
warm-start policy (--warm-start, the default: each round fine-tunes the previous round's network,
as the papers do). Each (method, seed) runs --rounds rounds in PROJ/compare/<method>/s<seed>/ (the
scenes are linked, not copied); --full-reference trains a fully supervised model per seed for
--full-steps (default: the training profile's), once, shared by every method. Finished runs are skipped and
an interrupted run continues, so the command can simply be run again. --seed-method method lets
each method draw and train its own preset seed instead. Then 'pcal report PROJ/compare' shows the
tables (mIoU over the classes of the ground truth, mean ± sd over seeds, ratio to the reference,
points spent) and the plot.

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
    budget: Annotated[str, typer.Option(help="Points per round for every method, as in 'pcal select' (3% or "
                                        "20000), or a comma list, one budget per round.")] = DEFAULT_BUDGET,
    seed_method: Annotated[str, typer.Option(help="random | seedal | method (each method's preset seed).")] = "random",
    seed_unit: Annotated[str, typer.Option(help="Unit of the shared random seed.")] = "region",
    seed_budget: Annotated[str, typer.Option(help="Budget of the shared seed.")] = "3%",
    full_reference: Annotated[bool, typer.Option("--full-reference/--no-full-reference",
                                                 help="Train a fully supervised reference per seed.")] = True,
    full_steps: Annotated[Optional[int], typer.Option(help="Training steps of the full-supervision reference "
                                                      "(default: the profile's full_steps, else twice --steps).",
                                                      show_default=False)] = None,
    reference_seeds: Annotated[Optional[int], typer.Option(help="Train the full-supervision reference for the "
                                                           "first N seeds only (the later seeds' ratios use seed "
                                                           "0's; default: every seed).", show_default=False)] = None,
    convergence_check: Annotated[bool, typer.Option("--convergence-check", help="Also train seed 0's reference "
                                                    "with twice --full-steps and report the change in mIoU "
                                                    "(under a point: the schedule converged).")] = False,
    warm_start: Annotated[bool, typer.Option("--warm-start/--no-warm-start",
                                             help="Every method fine-tunes the previous round's network "
                                             "(else each round trains from scratch).")] = True,
    backbone: Annotated[Optional[str], typer.Option(help="minkunet | spvcnn (default: the training profile's).",
                                                    show_default=False)] = None,
    cr: Annotated[Optional[float], typer.Option(help="Width multiplier of the network (default: the profile's).",
                                                show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps of round 0 (from scratch; default: the "
                                                 "profile's).", show_default=False)] = None,
    finetune_steps: Annotated[Optional[int], typer.Option(help="Training steps of each later round when it "
                                                          "fine-tunes (default: the profile's).",
                                                          show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (default: the profile's).",
                                                show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Scenes per step (default: the profile's).",
                                                      show_default=False)] = None,
    max_points: Annotated[Optional[int], typer.Option(help="Crop training scenes larger than this around a "
                                                      "labelled point (as in 'pcal train'; default: the "
                                                      "profile's).", show_default=False)] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    name: Annotated[str, typer.Option(help="Folder of the comparison under the project (several comparisons of "
                                      "one project share its full-supervision references).")] = "compare",
    workers: Annotated[int, typer.Option(help="Trainings side by side in separate processes, each with an equal "
                                         "share of the CPU threads.")] = 1,
) -> None:
    from pcal_cli.project import Project
    from pcal_cli.steps.compare import CompareSettings, compare, compare_dir
    from pcal_cli.training.supervised import profile_full_steps, profile_options

    proj = Project.open(project_dir(ctx, project))
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise PcalError("--methods: name at least one method")
    train_options = profile_options(proj, dict(backbone=backbone, cr=cr, steps=steps, finetune_steps=finetune_steps,
                                               lr=lr, batch_size=batch_size, max_points=max_points, device=device))
    full_steps = full_steps or profile_full_steps(proj, train_options)
    settings = CompareSettings(methods=names, seeds=seeds, rounds=rounds, budget=budget, seed_method=seed_method,
                               seed_unit=seed_unit, seed_budget=seed_budget, full_reference=full_reference,
                               full_steps=full_steps, warm_start=warm_start, train=train_options, name=name,
                               workers=workers, convergence_check=convergence_check,
                               reference_seeds=reference_seeds)
    with proj.lock("compare"), progress_bar() as progress:
        runs = progress.add_task("Runs", total=None, item="")
        step = progress.add_task("Training", total=None, item="")
        compare(proj, settings, say=lambda text: progress.console.print(text),
                on_run=lambda d, t, name: progress.update(runs, completed=d, total=t, item=name),
                on_step=lambda d, t, loss: progress.update(step, completed=d, total=t, item=f"loss {loss:.3f}"))
    out.print(f"done: {len(names)} method(s) x {seeds} seed(s) in {compare_dir(proj, name)}; "
              f"pcal report {Path(compare_dir(proj, name))}")
