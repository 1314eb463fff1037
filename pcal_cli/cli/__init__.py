"""The ``pcal`` command line: a root callback for shared options and one module per command."""

from __future__ import annotations

import inspect
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from pcal_cli import __version__
from pcal_cli.cli import check, compare, loop, methods, prepare, report, train, view
from pcal_cli.cli.common import err
from pcal_cli.errors import PcalError
from pcal_cli.threads import configure as configure_threads
from pcal_cli.launch import world_size_from_env

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="pcal",
    help="Active learning for 3D point cloud semantic segmentation.\n\n"
    "Every command reads and writes a project directory (-p PROJ): prepare a dataset, pick a "
    "seed set, then run rounds of train, evaluate, score, select and label.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=CONTEXT_SETTINGS,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pcal {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    project: Annotated[
        Optional[Path],
        typer.Option("--project", "-p", envvar="PCAL_PROJECT", help="Project directory used by every command.",
                     show_default=False),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    threads: Annotated[
        Optional[int], typer.Option("--threads", envvar="PCAL_THREADS", help="CPU threads for torch (default: "
                                    "OMP_NUM_THREADS, else the CPUs this process may use: affinity and cgroup "
                                    "quota).", show_default=False)
    ] = None,
) -> None:
    """Shared options; each command also takes -p itself."""
    ctx.obj = {"project": project, "threads": configure_threads(threads)}
    if ctx.invoked_subcommand not in (None, "train") and world_size_from_env() > 1:
        raise PcalError(f"'pcal {ctx.invoked_subcommand}' does not run under torchrun (WORLD_SIZE "
                        f"{world_size_from_env()}): only 'pcal train' is distributed; run the other steps in one "
                        "process, or as shards (docs/distributed.md)")


prepare.register(app)
train.register(app)
loop.register(app)
compare.register(app)
check.register(app)
report.register(app)
view.register(app)
methods.register(app)


def reflow(text: str | None) -> str | None:
    """Help text with each prose paragraph on one line, so the terminal wraps it, not the source.

    Typer keeps single line breaks of command help, so text wrapped at 100 columns in the source
    came out ragged in an 80-column terminal. Paragraphs with an indented line (examples) or a
    list item keep their lines."""
    if not text:
        return text
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines = paragraph.split("\n")
        keep = paragraph.startswith("\b") or any(
            line.startswith((" ", "\t", "- ", "* ")) or line[:3].rstrip(".").isdigit() for line in lines)
        paragraphs.append(paragraph if keep else " ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)


def _reflow_all(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        info.help = reflow(info.help)
    for group in typer_app.registered_groups:
        _reflow_all(group.typer_instance)


_reflow_all(app)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (e.g. a stale lock taken over) as one plain line on stderr."""
    err.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def _command_help(argv: list[str]) -> int | None:
    """``pcal CMD --help`` rendered by CMD alone, or ``None`` for any other command line.

    Through the group, typer would first coerce the root options (their defaults), which imports
    pydantic (about 0.1 s of the 0.3 s a help may take, benchmarks/cli_speed.py); CMD's own help
    needs none of them."""
    if len(argv) != 2 or argv[1] not in ("-h", "--help") or argv[0].startswith("-"):
        return None
    command = typer.main.get_command(app)
    sub = getattr(command, "commands", {}).get(argv[0])
    if sub is None:
        return None  # an unknown command: the group says so
    code = sub.main(["--help"], prog_name=f"pcal {argv[0]}", standalone_mode=False,
                    **CONTEXT_SETTINGS)
    return code if isinstance(code, int) else 0


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors end as one line on stderr and exit code 2, never a traceback."""
    warnings.showwarning = _show_warning
    try:
        code = _command_help(sys.argv[1:] if argv is None else argv)
        if code is None:
            code = app(args=argv, prog_name="pcal", standalone_mode=False)
    except PcalError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):  # click-style usage errors
            raise
        command = getattr(getattr(exc, "ctx", None), "command_path", "pcal")
        err.print(f"[bold red]error:[/] {escape(exc.format_message())} (see '{command} --help')",
                  highlight=False, markup=True, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
