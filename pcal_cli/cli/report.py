"""``pcal report``: tables of an AL run (or a comparison of runs) and the learning curve PNG."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from pcal_cli.cli.common import ProjectOption, err, out, project_dir
from pcal_cli.errors import PcalError

if TYPE_CHECKING:
    from pcal_cli.evaluation.report import RunReport

REPORT_HELP = """Learning curve, per-round table, per-class IoU and budget ledger.

With one project: a table per round (labelled points and % of the training split, what the
round added by unit and source, mIoU, OA, ratio to the full-supervision reference), the IoU per
class of the last evaluated round (or --round) and the budget spent per unit kind from the ledger.
With several projects (one per method and seed): mIoU mean ± std per method and round.
Writes learning_curve.png (mean line per method, band = min..max over its runs for a method with
several runs, full supervision dashed, a y axis of at least 20 mIoU points) into --out; --show-queries SCENE also writes queries_SCENE.png, the points selected in
queries.json of the last round that has one (or --round). Reads the project only; no lock taken.

Examples:

  pcal report -p demo --show-queries room_000

  pcal report runs/random_s0 runs/random_s1 runs/margin_s0 runs/margin_s1 --out cmp/
"""


def register(app: typer.Typer) -> None:
    app.command("report", help=REPORT_HELP)(report_command)


def report_command(
    ctx: typer.Context,
    projects: Annotated[Optional[list[Path]], typer.Argument(
        help="Project directories; several are compared by method (as well as -p).", show_default=False)] = None,
    project: ProjectOption = None,
    split: Annotated[str, typer.Option(help="The split whose metrics are reported (val | test).")] = "test",
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Folder for the PNGs (default: PROJ/report, or ./pcal_report for several projects).",
        show_default=False)] = None,
    show_queries: Annotated[Optional[str], typer.Option(
        "--show-queries", metavar="SCENE", help="Also draw the queried points of this training scene.",
        show_default=False)] = None,
    round_index: Annotated[Optional[int], typer.Option(
        "--round", "-r", help="Round for the per-class IoU and --show-queries (default: the last one that has them).",
        show_default=False)] = None,
) -> None:
    from pcal_cli.project import CONFIG_NAME
    from pcal_cli.rounds import read_json
    from pcal_cli.steps.compare import CONVERGENCE_FILE, SETTINGS_FILE, run_folders

    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise PcalError(f"--out {out_dir}: exists and is not a folder")
    paths = _project_paths(ctx, projects, project)
    if len(paths) == 1 and (paths[0] / SETTINGS_FILE).is_file() and not (paths[0] / CONFIG_NAME).is_file():
        folder = paths[0]  # a 'pcal compare' folder: every run in it
        paths = run_folders(folder)
        if not paths:
            raise PcalError(f"{folder}: no finished or started runs yet (run 'pcal compare')")
        out_dir = out_dir or folder / "report"
        if len(paths) == 1:
            _report_one(paths[0], split, out_dir, show_queries, round_index)
            return
    if len(paths) == 1:
        _report_one(paths[0], split, out_dir or paths[0] / "report", show_queries, round_index)
        return
    if show_queries is not None or round_index is not None:
        raise PcalError("--show-queries and --round apply to one project; pass a single project for them")
    _report_many(paths, split, out_dir or Path("pcal_report"))
    check = paths[0].parent.parent / CONVERGENCE_FILE
    if check.is_file():
        data = read_json(check, "convergence check")
        out.print(f"convergence check (seed {data.get('seed')}): full supervision {_pct(data.get('miou'))} at "
                  f"{data.get('steps')} steps, {_pct(data.get('miou_doubled'))} at {data.get('steps_doubled')} "
                  f"({100 * data.get('change', 0):+.1f} points)", highlight=False)


def _project_paths(ctx: typer.Context, projects: list[Path] | None, project: Path | None) -> list[Path]:
    """The projects named on the command line (arguments and -p), else the root/env project."""
    from pcal_cli.project import Project

    given = ([project] if project is not None else []) + list(projects or [])
    if not given:
        Project.open(project_dir(ctx, None))  # a clear error when there is none
        given = [project_dir(ctx, None)]
    paths, seen = [], set()
    for path in given:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            paths.append(path)
    return paths


def _report_one(path: Path, split: str, out_dir: Path, show_queries: str | None, round_index: int | None) -> None:
    from pcal_cli.evaluation import plots
    from pcal_cli.evaluation.report import collect_run, scene_queries
    from pcal_cli.project import Project

    run = collect_run(path, split)
    if round_index is not None:
        run.row(round_index)  # a missing round fails before anything is printed
    queries = None if show_queries is None else scene_queries(Project.open(path), show_queries, round_index)
    seed = "?" if run.seed is None else str(run.seed)
    out.print(f"[bold]{run.name}[/]: method [bold]{run.method}[/], seed {seed}, dataset {run.dataset}, "
              f"{run.training_points:,} training points; metrics on '{split}'")
    out.print(_rounds_table(run))
    _print_class_table(run, round_index)
    if run.budget:
        out.print(_budget_table(run))
    if run.seed_report:
        out.print(_seed_table(run.seed_report))
    for note in run.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False)
    if run.evaluated:
        target = out_dir / "learning_curve.png"
        plots.learning_curve({run.method: [run]}, target, title=f"Learning curve: {run.name} ({run.dataset})")
        out.print(f"learning curve: {target}")
    else:
        out.print(f"no round evaluated on '{split}' yet: learning curve not written")
    if queries is not None:
        target = out_dir / f"queries_{show_queries}.png"
        points = int(queries.query_mask.sum())
        title = (f"{run.name}: {show_queries}, queries of round {queries.round} "
                 f"({queries.units} {queries.unit} unit(s), {points:,} points)")
        plots.scene_queries(queries.xyz, queries.rgb, queries.query_mask, target, title,
                            labelled_mask=queries.labelled_mask)
        if not points:
            out.print(f"[yellow]note:[/] round {queries.round} queried no point of {show_queries}")
        out.print(f"queries: {target}")


def _rounds_table(run: RunReport) -> Table:

    table = Table(title=f"rounds of {run.name}")
    for column in ("round", "labelled points", "% labelled", "added points", "added units", "source",
                   "mIoU", "OA", "vs full"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for row in run.rows:
        units = "" if row.units_added is None else f"{row.units_added:,} {row.unit or ''}".strip()
        table.add_row(str(row.round), f"{row.labelled_points:,}", f"{row.labelled_percent:.3f}",
                      _count(row.points_added), units, row.source or "", _pct(row.miou), _pct(row.oa),
                      "n/a" if row.ratio_to_full is None else f"{100.0 * row.ratio_to_full:.1f}%")
    if run.full is not None:
        table.add_row("full", "all", "100", "", "", "ground truth", _pct(run.full.miou),
                      _pct(run.full.oa), "100%", style="dim")
    return table


def _print_class_table(run: RunReport, round_index: int | None) -> None:

    if round_index is not None:
        row = run.row(round_index)
        if row.evaluation is None:
            out.print(f"round {round_index} has no metrics on '{run.split}': no per-class IoU")
            return
    elif run.evaluated:
        row = run.evaluated[-1]
    else:
        return
    table = Table(title=f"IoU per class, round {row.round} ({run.split})")
    table.add_column("class")
    table.add_column(f"round {row.round}", justify="right")
    if run.full is not None:
        table.add_column("full", justify="right")
        table.add_column("vs full", justify="right")
    for name in run.classes:
        value = row.evaluation.iou.get(name)
        cells = [name, _pct(value)]
        if run.full is not None:
            ref = run.full.iou.get(name)
            cells += [_pct(ref), "n/a" if value is None or not ref else f"{100.0 * value / ref:.1f}%"]
        table.add_row(*cells)
    out.print(table)


def _budget_table(run: RunReport) -> Table:

    table = Table(title="budget spent (ledger)")
    for column in ("unit", "source", "rounds", "units", "points", "% of training"):
        table.add_column(column, justify="left" if column in ("unit", "source") else "right")
    for line in run.budget:
        table.add_row(line.unit, line.source, str(line.events), f"{line.units:,}", f"{line.points:,}",
                      f"{line.percent:.3f}")
    share = 100.0 * run.ledger_points / run.training_points if run.training_points else 0.0
    table.add_row("total", "", "", "", f"{run.ledger_points:,}", f"{share:.3f}", style="bold")
    return table


def _seed_table(report: dict) -> Table:
    """SeedAL's chosen scenes: their own diversity (1 - mu_s) and the objective."""
    gap = "" if report.get("gap") is None else f", gap {report['gap']:.3g}"
    table = Table(title=f"seed diversity (SeedAL, {report.get('features', 'points')} descriptors): objective "
                        f"{report.get('objective', 0):.4f}, {report.get('solver')} {report.get('status')}{gap}")
    for column in ("scene", "points", "centroids", "1 - mu_s"):
        table.add_column(column, justify="left" if column == "scene" else "right")
    for entry in report.get("scenes", []):
        table.add_row(str(entry.get("scene")), f"{entry.get('points', 0):,}", str(entry.get("centroids")),
                      f"{1 - entry.get('mu_s', 1):.3f}")
    return table


def _report_many(paths: list[Path], split: str, out_dir: Path) -> None:
    from pcal_cli.evaluation import plots
    from pcal_cli.evaluation.report import ahead_of_random, collect_run, curve, full_reference, group_runs

    runs = []
    for path in paths:
        try:
            runs.append(collect_run(path, split))
        except PcalError as exc:
            err.print(f"[yellow]skipped:[/] {exc}", highlight=False)
    if not runs:
        raise PcalError(f"nothing to report in any of the {len(paths)} projects")
    if len({run.dataset for run in runs}) > 1 or len({tuple(run.classes) for run in runs}) > 1:
        out.print("[yellow]note:[/] the projects have different datasets or classes; their curves may not compare")
    groups = group_runs(runs)
    methods = Table(title="runs per method")
    for column in ("method", "runs", "seeds", "projects"):
        methods.add_column(column)
    for method, members in groups.items():
        seeds = ", ".join("?" if r.seed is None else str(r.seed) for r in members)
        methods.add_row(method, str(len(members)), seeds, ", ".join(r.name for r in members))
    out.print(methods)

    curves = {method: {p.round: p for p in curve(members)} for method, members in groups.items()}
    rounds = sorted({index for points in curves.values() for index in points})
    baseline = _random_baseline(groups)
    table = Table(title=f"mIoU on '{split}' (%, classes of the ground truth): mean ± sd over seeds @ mean % "
                        "labelled (ratio to full supervision)",
                  caption="sd: sample standard deviation over seeds; (k/n): only k of the method's n runs "
                          "evaluated" + (f"; ≈: not ahead of {baseline} by more than {baseline}'s sd"
                                         if baseline else ""))
    table.add_column("round", justify="right")
    for method in groups:
        table.add_column(method, justify="right")
    for index in rounds:
        cells = [str(index)]
        for method, members in groups.items():
            point = curves[method].get(index)
            if point is None:
                cells.append("")
                continue
            partial = f" ({point.runs}/{len(members)})" if point.runs < len(members) else ""
            reference = full_reference(members)
            ratio = "" if not reference else f" ({point.miou_mean / reference:.2f}×)"
            base = None if baseline in (None, method) else curves[baseline].get(index)
            same = base is not None and (point.miou_mean, point.miou_std) == (base.miou_mean, base.miou_std)
            ahead = None if base is None or same else ahead_of_random(point, base)  # same: the shared round 0
            mark = " ≈" if ahead is False else ""
            cells.append(f"{100 * point.miou_mean:.1f} ± {100 * point.miou_std:.1f} "
                         f"@ {point.labelled_percent:.2f}%{ratio}{partial}{mark}")
        table.add_row(*cells)
    references = [full_reference(members) for members in groups.values()]
    if any(ref is not None for ref in references):
        table.add_row("full", *[_pct(ref) for ref in references], style="dim")
    out.print(table)
    if not rounds:
        out.print(f"no round evaluated on '{split}' in any project: learning curve not written")
        return
    out.print(_spent_table(groups, curves, rounds))
    out.print(_final_class_table(groups, split))
    for line in summary_sentences(groups, curves, baseline):
        out.print(line, highlight=False)
    target = out_dir / "learning_curve.png"
    plots.learning_curve(groups, target)
    out.print(f"learning curve: {target} (line: mean over runs; band: {plots.BAND})")


def summary_sentences(groups: dict, curves: dict, baseline: str | None) -> list[str]:
    """One sentence per method at its last round evaluated on every run: mIoU, share of full
    supervision, points labelled, and random's mIoU at that round (the same points bought)."""
    from pcal_cli.evaluation.report import full_reference

    lines = []
    for method, members in groups.items():
        if method == baseline:
            continue
        complete = [r for r, p in curves[method].items() if p.runs == len(members)]
        if not complete:
            continue
        point = curves[method][max(complete)]
        reference = full_reference(members)
        share = f" = {100 * point.miou_mean / reference:.0f} % of full supervision" if reference else ""
        text = (f"{method}: {100 * point.miou_mean:.1f} mIoU{share} with {point.labelled_percent:.2f} % of the points "
                f"labelled (round {point.round}, {point.runs} seed(s))")
        other = curves[baseline].get(point.round) if baseline else None
        if other is not None:
            text += f"; {baseline} at the same points: {100 * other.miou_mean:.1f}"
        lines.append(text)
    return lines


def _random_baseline(groups: dict) -> str | None:
    """The random baseline of a comparison: ``random``, else a method whose scorer is random."""
    from pcal_cli.methods import METHODS

    if "random" in groups:
        return "random"
    return next((m for m in groups if m in METHODS and METHODS[m].scorer == "random" and m != "wsegpc"), None)


def _spent_table(groups: dict, curves: dict, rounds: list[int]) -> Table:
    """Points each round added (mean over seeds) and the void share of them, per method."""
    table = Table(title="points bought per round (mean over seeds; void: asked points with no valid class)")
    table.add_column("round", justify="right")
    for method in groups:
        table.add_column(method, justify="right")
    for index in rounds:
        cells = [str(index)]
        for method in groups:
            point = curves[method].get(index)
            if point is None or point.points_added is None:
                cells.append("")
                continue
            void = "" if point.void_share is None else f" ({100 * point.void_share:.1f}% void)"
            cells.append(f"{point.points_added:,.0f}{void}")
        table.add_row(*cells)
    return table


def _final_class_table(groups: dict, split: str) -> Table:
    """Per-class IoU at each method's last evaluated round, averaged over its runs."""
    classes = next(iter(groups.values()))[0].classes
    table = Table(title=f"per-class IoU on '{split}' (%) at each method's final round, mean over runs")
    table.add_column("class")
    for method in groups:
        table.add_column(method, justify="right")
    means = {}
    for method, members in groups.items():
        finals = [run.evaluated[-1].evaluation.iou for run in members if run.evaluated]
        means[method] = [_mean([f.get(name) for f in finals]) for name in classes]
    for index, name in enumerate(classes):
        table.add_row(name, *[_pct(means[m][index]) for m in groups])
    return table


def _mean(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f}"


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"
