"""PNG figures for ``pcal report``: the learning curve and the queried points of a scene.

Figures are drawn on matplotlib's Agg canvas (no display, no pyplot state) and written
atomically: rendered to a temporary file beside the target, then renamed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

from pcal_cli.atomic import atomic_open
from pcal_cli.errors import PcalError
from pcal_cli.evaluation.report import CurvePoint, RunReport, curve, full_reference

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BAND = "min-max over runs"
MIN_Y_SPAN = 20.0  # mIoU points: the y axis never spans less, so a 0.5-point step is not a cliff
QUERY_COLOR = "#e6007e"  # strong magenta: absent from typical indoor/outdoor colours
LABELLED_COLOR = "#1f77b4"
UNLABELLED_GREY = 0.78


@dataclass
class CurvePlot:
    """What :func:`learning_curve` drew: one series per method (fractions), the reference, the
    band (``""`` when no method has several runs) and the y range (mIoU %)."""

    series: dict[str, list[CurvePoint]]
    full_miou: float | None
    band: str = BAND
    ylim: tuple[float, float] = (0.0, 100.0)


def y_limits(values: np.ndarray, min_span: float = MIN_Y_SPAN) -> tuple[float, float]:
    """A y range (mIoU %) around ``values``: the data padded by 5 % of its span, widened about its
    middle to at least ``min_span`` points, and kept within 0..100."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return 0.0, 100.0
    low, high = float(values.min()), float(values.max())
    pad = 0.05 * (high - low)
    low, high = low - pad, high + pad
    if high - low < min_span:
        middle = (low + high) / 2
        low, high = middle - min_span / 2, middle + min_span / 2
    shift = max(0.0, -low) - max(0.0, high - 100.0)
    return max(0.0, low + shift), min(100.0, high + shift)


def learning_curve(groups: dict[str, list[RunReport]], path: str | os.PathLike, *,
                   title: str | None = None) -> CurvePlot:
    """Draw :func:`curve_figure` and write it as a PNG at ``path`` (atomically)."""
    fig, drawn = curve_figure(groups, title=title)
    _save(fig, path)
    return drawn


def curve_figure(groups: dict[str, list[RunReport]], *, title: str | None = None) -> tuple[Figure, CurvePlot]:
    """mIoU (%) against the labelled share of training points (%), one line per method.

    The line is the mean over a method's runs at each round; a method with more than one run
    gets a shaded band from the minimum to the maximum over its runs (its legend entry says so);
    the mean full-supervision mIoU of the runs is a dashed horizontal line when known. The y axis
    spans at least :data:`MIN_Y_SPAN` points (:func:`y_limits`).
    """
    series = {method: points for method, points in ((m, curve(runs)) for m, runs in groups.items()) if points}
    if not series:
        raise PcalError("no evaluated round to plot: run 'pcal evaluate' on some rounds first")
    runs = [run for method in series for run in groups[method]]
    split = runs[0].split
    fig = _figure(figsize=(7.5, 4.8), dpi=120)
    ax = fig.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(series))]
    drawn: list[np.ndarray] = []
    banded = False
    for color, (method, points) in zip(colors, series.items()):
        x = np.array([p.labelled_percent for p in points])
        mean = 100.0 * np.array([p.miou_mean for p in points])
        count = len(groups[method])
        units = sorted({row.unit for run in groups[method] for row in run.rows if row.unit and row.round > 0})
        band = "; band: min-max" if count > 1 else ""
        label = (f"{method} ({count} run{'s' if count != 1 else ''}"
                 f"{', unit ' + '/'.join(units) if units else ''}{band})")
        ax.plot(x, mean, marker="o", markersize=4, color=color, label=label)
        drawn.append(mean)
        if count > 1:
            low = 100.0 * np.array([p.miou_min for p in points])
            high = 100.0 * np.array([p.miou_max for p in points])
            ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)
            drawn += [low, high]
            banded = True
    full = full_reference(runs)
    if full is not None:
        ax.axhline(100.0 * full, linestyle="--", color="black", linewidth=1.2,
                   label=f"full supervision ({100.0 * full:.1f})")
        drawn.append(np.array([100.0 * full]))
    ylim = y_limits(np.concatenate(drawn))
    ax.set_ylim(*ylim)
    ax.set_xlabel("labelled training points (%)")
    ax.set_ylabel(f"mIoU on {split} (%)")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or f"Learning curve ({runs[0].dataset})", fontsize=11)
    caption = (f"line: mean over runs; band: {BAND}" if banded
               else "line: mIoU of each method's run (one run: no spread)")
    ax.annotate(f"{caption}; y axis spans at least {MIN_Y_SPAN:g} points", xy=(0, 0), xycoords="figure fraction",
                xytext=(6, 4), textcoords="offset points", fontsize=7, color="0.35")
    return fig, CurvePlot(series=series, full_miou=full, band=BAND if banded else "", ylim=ylim)


def scene_queries(scene_xyz: np.ndarray, rgb: np.ndarray | None, query_mask: np.ndarray,
                  path: str | os.PathLike, title: str, *, labelled_mask: np.ndarray | None = None,
                  max_points: int = 200_000, seed: int = 0) -> np.ndarray:
    """A top-down (x-y) and a side view of a scene with its queried points in magenta.

    Other points are drawn in grey (or their colour, faded) and points already labelled in blue.
    Big scenes are subsampled to ``max_points`` (queried points first); returns the indices drawn.
    """
    xyz = np.asarray(scene_xyz, dtype=np.float64)
    query = np.asarray(query_mask, dtype=bool)
    if len(query) != len(xyz):
        raise PcalError(f"query mask has {len(query)} entries for {len(xyz)} points")
    labelled = np.zeros(len(xyz), dtype=bool) if labelled_mask is None else np.asarray(labelled_mask, dtype=bool)
    drawn = _subsample(query, max_points, seed)
    base = np.full((len(xyz), 3), UNLABELLED_GREY)
    if rgb is not None:
        base = 0.45 * np.asarray(rgb, dtype=np.float64) / 255.0 + 0.55 * UNLABELLED_GREY
    base[labelled] = _rgb(LABELLED_COLOR)
    rest = drawn[~query[drawn]]
    shown = drawn[query[drawn]]

    extent = np.ptp(xyz, axis=0) if len(xyz) else np.zeros(3)
    horizontal = 0 if extent[0] >= extent[1] else 1  # the side view looks across the longer axis
    fig = _figure(figsize=(12, 5.5), dpi=110)
    size = float(np.clip(6e4 / max(len(drawn), 1), 0.3, 6.0))
    views = (("top-down view", 0, 1), (f"side view ({'xy'[horizontal]}-z)", horizontal, 2))
    for column, (name, a, b) in enumerate(views, start=1):
        ax = fig.add_subplot(1, 2, column)
        order = rest
        if b == 2:  # side view: points nearer the viewer (smaller depth) drawn last, on top
            order = rest[np.argsort(-xyz[rest, 1 - horizontal], kind="stable")]
        ax.scatter(xyz[order, a], xyz[order, b], c=base[order], s=size, linewidths=0, rasterized=True)
        ax.scatter(xyz[shown, a], xyz[shown, b], c=QUERY_COLOR, s=size * 2.5, linewidths=0, rasterized=True)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(f"{'xyz'[a]} (m)")
        ax.set_ylabel(f"{'xyz'[b]} (m)")
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", linestyle="", color=QUERY_COLOR, label=f"queried ({int(query.sum()):,} points)"),
        Line2D([], [], marker="o", linestyle="", color=LABELLED_COLOR,
               label=f"labelled before ({int(labelled.sum()):,})"),
        Line2D([], [], marker="o", linestyle="", color=str(UNLABELLED_GREY), label="unlabelled"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    note = "" if len(drawn) == len(xyz) else f" ({len(drawn):,} of {len(xyz):,} points drawn)"
    fig.suptitle(title + note, fontsize=11)
    _save(fig, path)
    return drawn


def _subsample(query: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_points`` points: the queried ones first, then a random rest."""
    if len(query) <= max_points:
        return np.arange(len(query))
    rng = np.random.default_rng(seed)
    queried = np.flatnonzero(query)
    if len(queried) > max_points // 2:
        queried = rng.choice(queried, max_points // 2, replace=False)
    others = np.flatnonzero(~query)
    others = rng.choice(others, min(len(others), max_points - len(queried)), replace=False)
    return np.sort(np.concatenate([queried, others]))


def _rgb(hex_color: str) -> np.ndarray:
    return np.array([int(hex_color[i:i + 2], 16) / 255.0 for i in (1, 3, 5)])


def _figure(figsize: tuple[float, float], dpi: int) -> Figure:
    """A figure on its own Agg canvas (matplotlib is imported here: it takes a second or more)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> None:
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png")
