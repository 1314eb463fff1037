"""What every command shares: the project option, consoles, progress bars."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

out = Console()
err = Console(stderr=True)

ProjectOption = Annotated[
    Optional[Path],
    typer.Option("--project", "-p", help="Project directory (default: the root --project, then $PCAL_PROJECT).",
                 show_default=False),
]


def project_dir(ctx: typer.Context, project: Path | None) -> Path | None:
    """The project directory: the command's own -p, else the root callback's (which reads PCAL_PROJECT)."""
    if project is not None:
        return project
    root = ctx.find_root()
    return (root.obj or {}).get("project") if root is not None else None


def progress_bar() -> Progress:
    """A rich progress bar on stderr for long work (hidden when stderr is not a terminal)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[item]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
