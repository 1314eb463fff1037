"""What every command shares: the project option, consoles, progress bars.

Progress goes to stderr: on a terminal as rich bars; anywhere else (a log file, a pipe, a cluster
job) as one plain line per task at a steady interval (``PCAL_PROGRESS_SECONDS``, default 30),
with the step, the task's item (the loss, the scene), the rate and the time left, and a last line
when the task ends.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

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


def progress_bar() -> "Progress | PlainProgress":
    """Rich progress bars on stderr for long work on a terminal; plain timed lines elsewhere."""
    if not err.is_terminal:
        return PlainProgress()
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


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class _PlainConsole:
    def print(self, *objects: Any, **kwargs: Any) -> None:  # noqa: A003 - rich's name
        err.print(*objects, **kwargs)


class PlainProgress:
    """The part of rich's :class:`Progress` the commands use, as plain lines on stderr:
    ``<description>: 120/300 (40%), loss 0.512, 2.10/s, 1m25s left`` at most every ``interval``
    seconds per task, and once when a task that lasted at least ``interval`` completes (work
    quicker than that prints nothing)."""

    def __init__(self, interval: float | None = None, stream=None) -> None:
        self.interval = float(os.environ.get("PCAL_PROGRESS_SECONDS", "30")) if interval is None else interval
        self.stream = stream
        self.console = _PlainConsole()
        self._tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        task = len(self._tasks)
        now = time.monotonic()
        self._tasks[task] = {"description": description, "total": total, "completed": 0, "fields": fields,
                             "began": now, "shown": now, "done": False, "first": None}
        return task

    def update(self, task: int, *, completed: float | None = None, total: float | None = None,
               advance: float | None = None, **fields: Any) -> None:
        state = self._tasks[task]
        if total is not None:
            state["total"] = total
        if completed is not None:
            state["completed"] = completed
        if advance is not None:
            state["completed"] += advance
        state["fields"].update(fields)
        now = time.monotonic()
        if state["first"] is None:  # the rate counts from the first update (after loading, warm-up)
            state["first"] = (now, state["completed"])
        finished = state["total"] is not None and state["completed"] >= state["total"]
        if finished and state["done"]:
            return
        long_enough = now - state["began"] >= self.interval  # quick work prints nothing
        if (finished and long_enough) or now - state["shown"] >= self.interval:
            state["shown"], state["done"] = now, finished
            self._write(self._line(state, now))

    def _line(self, state: dict[str, Any], now: float) -> str:
        done, total = state["completed"], state["total"]
        parts = [f"{done:g}/{total:g} ({100 * done / total:.0f}%)" if total else f"{done:g}"]
        item = state["fields"].get("item")
        if item:
            parts.append(str(item))
        start, start_done = state["first"]
        if now > start and done > start_done:
            rate = (done - start_done) / (now - start)
            parts.append(f"{rate:.2f}/s")
            if total and done < total:
                parts.append(f"{_duration((total - done) / rate)} left")
        if total and done >= total:
            parts.append(f"done in {_duration(now - state['began'])}")
        return f"{state['description']}: " + ", ".join(parts)

    def _write(self, line: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()
