"""``pcal check``: verify a project's integrity (``--repair`` removes interrupted leftovers)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pcal_cli.cli.common import ProjectOption, out, project_dir

CHECK_HELP = """Verify a project: config, scenes, label files (sizes, ids, checksums), labels only
growing, the ledger against the label files, closed rounds' manifests (SHA-256), and orphan
temporary files. Exit code 0 when nothing is wrong, 1 when a problem is found.

--repair removes orphan temporary files and round folders that never completed, and records in
the ledger the complete rounds it lacks (under the project lock); it never removes a completed
round or a label the ledger records. Every problem names what is wrong and the command that
repairs it, where one exists.

Example:

  pcal check -p demo
"""


def register(app: typer.Typer) -> None:
    app.command("check", help=CHECK_HELP)(check_command)


def check_command(
    ctx: typer.Context,
    project: ProjectOption = None,
    repair: Annotated[bool, typer.Option("--repair", help="Remove orphan temporaries and incomplete rounds; record "
                                         "unrecorded rounds in the ledger.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Read only the scenes' headers.")] = False,
) -> None:
    from pcal_cli.check import OK, PROBLEM, check_project, repair_ledger, repair_project
    from pcal_cli.project import Project

    proj = Project.open(project_dir(ctx, project))
    if repair:
        with proj.lock("check --repair"):
            removed = repair_project(proj)
            recorded = repair_ledger(proj)
        for path in removed:
            out.print(f"removed {Path(path).relative_to(proj.root)}")
        for index in recorded:
            out.print(f"recorded round {index} in the ledger")
        if not removed and not recorded:
            out.print("nothing to repair")
    findings = check_project(proj, quick=quick)
    table = Table(title=f"pcal check: {proj.root}")
    for column in ("check", "status", "detail"):
        table.add_column(column)
    styles = {OK: "green", PROBLEM: "bold red"}
    for finding in findings:
        table.add_row(finding.check, f"[{styles.get(finding.status, 'yellow')}]{finding.status}[/]",
                      finding.detail, )
    out.print(table)
    problems = sum(f.status == PROBLEM for f in findings)
    if problems:
        out.print(f"{problems} problem(s) found")
        raise typer.Exit(1)
