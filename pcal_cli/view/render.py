"""``pcal view`` as one library call: gather a scene and its round, build the page, write it.

The page is written atomically (a temporary name beside the target, then a rename), by default to
``PROJ/report/view_r<NNN>_<scene>.html``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pcal_cli import __version__
from pcal_cli.atomic import write_text
from pcal_cli.errors import PcalError
from pcal_cli.project import Project
from pcal_cli.view.data import DEFAULT_MAX_POINTS, SUBSAMPLE_SEED, StageCallback, gather_scene
from pcal_cli.layout import REPORT_DIR



@dataclass
class ViewResult:
    """What :func:`write_view` wrote."""

    path: Path
    round: int
    scene: str
    split: str
    shown: int
    total_points: int
    queried_points: int | None
    colourings: list[str]
    notes: list[str]
    size: int


def default_output(project: Project, round_index: int, scene: str) -> Path:
    """``PROJ/report/view_r<NNN>_<scene>.html``."""
    return project.root / REPORT_DIR / f"view_r{round_index:03d}_{scene}.html"


def check_output(given: str | os.PathLike) -> None:
    """A page cannot be written below a file: a clear error before any work."""
    path = Path(given)
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise PcalError(f"--out {path}: {parent} is not a folder")


def output_path(given: str | os.PathLike | None, project: Project, round_index: int, scene: str) -> Path:
    """Where the page goes: ``given`` (a folder: the default name inside it), else the default."""
    if given is None:
        return default_output(project, round_index, scene)
    path = Path(given)
    check_output(path)
    return path / default_output(project, round_index, scene).name if path.is_dir() else path


def write_view(project: Project, round_index: int | None = None, scene: str | None = None,
               out: str | os.PathLike | None = None, *, max_points: int = DEFAULT_MAX_POINTS, device: str = "auto",
               seed: int = SUBSAMPLE_SEED, on_stage: StageCallback | None = None) -> ViewResult:
    """Write the HTML view of ``scene`` in a round (defaults: the latest round, the training scene
    with the most queried points) and return what it shows."""
    from pcal_cli.view.colours import colourings
    from pcal_cli.view.html import build_page
    from pcal_cli.view.overview import round_overview

    if out is not None:
        check_output(out)
    stages = 1  # gather_scene's stages, then building and writing the page

    def forward(done: int, total: int, what: str) -> None:
        nonlocal stages
        stages = total + 1
        if on_stage is not None:
            on_stage(done, stages, what if done < total else "building the page")

    view = gather_scene(project, round_index, scene, max_points=max_points, device=device, seed=seed,
                        on_stage=forward)
    overview = round_overview(project, view.round)
    config = project.config
    drawn = colourings(view, list(config.classes), [list(c) for c in config.colors])
    page = build_page(view, overview, drawn, project=project.root.resolve().name, version=__version__)
    path = output_path(out, project, view.round, view.scene)
    try:
        write_text(path, page)
    except OSError as exc:
        raise PcalError(f"{path}: cannot write the page ({exc.strerror or exc})") from None
    if on_stage is not None:
        on_stage(stages, stages, "done")
    return ViewResult(path=path, round=view.round, scene=view.scene, split=view.split, shown=view.shown,
                      total_points=view.total_points,
                      queried_points=None if view.queried is None else view.queried_points,
                      colourings=[c.label for c in drawn], notes=view.notes + overview.notes,
                      size=len(page.encode("utf-8")))
