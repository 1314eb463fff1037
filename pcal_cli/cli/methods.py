"""``pcal methods``: what is installed (methods, scorers, selectors, backbones, datasets) and from where."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pcal_cli.cli.common import out
from pcal_cli.errors import PcalError

KINDS = ("methods", "scorers", "selectors", "backbones", "datasets")

METHODS_HELP = """List the methods, scorers, selectors, backbones and dataset importers pcal can use,
built in or added by an installed plugin package (entry point groups pcal.methods, pcal.scorers,
pcal.selectors, pcal.backbones, pcal.datasets; docs/extending.md), with where each comes from.

Examples:

  pcal methods

  pcal methods --kind scorers
"""


def register(app: typer.Typer) -> None:
    app.command("methods", help=METHODS_HELP)(methods_command)


def entries(kind: str) -> list[tuple[str, str, str]]:
    """``(name, origin, description)`` of every entry of one kind."""
    from pcal_cli.plugins import origin

    if kind == "methods":
        from pcal_cli.methods import all_methods

        return [(n, origin(kind, n), m.description) for n, m in all_methods().items()]
    if kind == "scorers":
        from pcal_cli.acquisition import all_scorers

        return [(n, origin(kind, n), s.description) for n, s in all_scorers().items()]
    if kind == "selectors":
        from pcal_cli.selection import all_selectors

        return [(n, origin(kind, n), s.description) for n, s in all_selectors().items()]
    if kind == "backbones":
        from pcal_cli.models import all_models

        return [(n, origin(kind, n), (getattr(m, "__doc__", "") or "").strip().split("\n")[0])
                for n, m in all_models().items()]
    from pcal_cli.data.datasets.registry import all_datasets

    return [(n, origin(kind, n), (getattr(f, "__doc__", "") or "").strip().split("\n")[0])
            for n, f in all_datasets().items()]


def methods_command(
    kind: Annotated[str, typer.Option(help=f"{' | '.join(KINDS)} | all.")] = "all",
) -> None:
    kinds = KINDS if kind == "all" else (kind,)
    if kind != "all" and kind not in KINDS:
        raise PcalError(f"--kind must be one of {', '.join(KINDS)} or all, got '{kind}'")
    for name in kinds:
        table = Table(title=name)
        for column in ("name", "from", "what it does"):
            table.add_column(column)
        for entry, where, description in entries(name):
            table.add_row(entry, where, description)
        out.print(table)
