"""Commands that later versions fill in: each says so in --help and refuses to run (exit 2)."""

from __future__ import annotations

import typer

from pcal_cli import __version__
from pcal_cli.errors import PcalError

PLANNED = {
    "seed": "Pick the initial labelled set (random, SeedAL, ...).",
    "score": "Score unlabelled units with an acquisition function.",
    "select": "Select the next query batch under a point budget.",
    "label": "Reveal labels with the oracle, or import a person's labels.",
    "round": "Run one whole active learning round.",
    "report": "Learning curves, budget ledger and per-class IoU.",
}


def _planned_command(name: str):
    def command(ctx: typer.Context) -> None:
        raise PcalError(f"'pcal {name}' is not available in pcal {__version__} yet (see the roadmap in README.md)")

    command.__doc__ = f"{PLANNED[name]} (planned: not available yet)"
    return command


def register(app: typer.Typer) -> None:
    for name in PLANNED:
        app.command(
            name,
            context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
            add_help_option=True,
        )(_planned_command(name))
