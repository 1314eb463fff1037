"""The colourings of ``pcal view``: a palette index per shown point, the palette and the legend.

Each :class:`Colouring` is what one button of the page shows. Codes are small integers (uint8
while the palette has at most 256 colours), so every colouring of 200,000 points costs the page
about 270 kB; the page maps them to colours with a stepped colour scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcal_cli.view.data import NO_TRUTH, RIGHT, WRONG, SceneView

GREY = "#c8c8c8"  # no ground truth, no score, not queried
QUERIED = "#e6007e"  # as in pcal report's queries PNG
ASKED = "#1f77b4"
RIGHT_COLOUR, WRONG_COLOUR = "#2ca02c", "#d62728"
#: Viridis, sampled at ten even stops (low score dark purple, high score yellow).
SCORE_STOPS = ("#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
               "#b5de2b", "#fde725")
SCORE_LEVELS = 255  # codes 1..255; 0 = no score
QUERY_SIZE, ASKED_SIZE = 2.5, 1.5  # queried and labelled points are drawn this many times larger


@dataclass
class Colouring:
    """One way of colouring the shown points.

    ``codes`` index ``palette`` per point; ``legend`` is (name, colour) per legend entry;
    ``sizes`` scales the marker of each point (``None``: all alike); ``ticks`` are the colour
    bar's (code, text) marks (``None``: no colour bar).
    """

    key: str
    label: str
    caption: str
    codes: np.ndarray
    palette: list[str]
    legend: list[tuple[str, str]]
    sizes: np.ndarray | None = None
    ticks: list[tuple[int, str]] | None = None


def hex_colour(rgb) -> str:
    """``[r, g, b]`` (0..255) -> ``'#rrggbb'``."""
    r, g, b = (int(np.clip(v, 0, 255)) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def class_colouring(key: str, label: str, caption: str, values: np.ndarray, classes: list[str],
                    colors: list[list[int]], unknown: str) -> Colouring:
    """Points in their class's colour; ids < 0 grey (named ``unknown`` in the legend). The legend
    lists the classes present, in class order."""
    k = len(classes)
    codes = np.where(values < 0, k, values).astype(_code_type(k + 1))
    present = np.bincount(codes, minlength=k + 1) > 0
    palette = [hex_colour(c) for c in colors] + [GREY]
    legend = [(classes[i], palette[i]) for i in np.flatnonzero(present[:k])]
    if present[k]:
        legend.append((unknown, GREY))
    return Colouring(key, label, caption, codes, palette, legend)


def error_colouring(error: np.ndarray) -> Colouring:
    """Right / wrong / no ground truth, with the share of right points among those with truth."""
    counts = np.bincount(error, minlength=3)
    judged = counts[RIGHT] + counts[WRONG]
    share = f"{100.0 * counts[RIGHT] / judged:.1f}% of the {judged:,} shown points with ground truth are right" \
        if judged else "no shown point has ground truth"
    palette = [RIGHT_COLOUR, WRONG_COLOUR, GREY]
    names = [f"right ({counts[RIGHT]:,})", f"wrong ({counts[WRONG]:,})", f"no ground truth ({counts[NO_TRUTH]:,})"]
    legend = [(names[i], palette[i]) for i in range(3) if counts[i]]
    return Colouring("error", "Error", share, error.astype(np.uint8), palette, legend)


def score_palette(levels: int = SCORE_LEVELS) -> list[str]:
    """Grey (no score) then ``levels`` colours interpolated along :data:`SCORE_STOPS`."""
    stops = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in SCORE_STOPS], dtype=np.float64)
    at = np.linspace(0, len(stops) - 1, levels)
    rgb = np.stack([np.interp(at, np.arange(len(stops)), stops[:, c]) for c in range(3)], axis=1)
    return [GREY] + [hex_colour(np.rint(row)) for row in rgb]


def score_codes(scores: np.ndarray, low: float, high: float, levels: int = SCORE_LEVELS) -> np.ndarray:
    """0 where the score is NaN, else 1..``levels`` linear from ``low`` to ``high`` (uint8)."""
    known = np.isfinite(scores)
    span = high - low
    scaled = (np.where(known, scores, low) - low) / span if span > 0 else np.zeros(len(scores))
    codes = 1 + np.rint(np.clip(scaled, 0.0, 1.0) * (levels - 1))
    return np.where(known, codes, 0).astype(np.uint8)


def tick_digits(low: float, high: float) -> int:
    """Significant digits (3 to 8) that tell ``low``, the midpoint and ``high`` apart."""
    values = (low, (low + high) / 2, high)
    return next((d for d in range(3, 9) if len({f"{v:.{d}g}" for v in values}) == 3), 8)


def score_colouring(scores: np.ndarray, unit: str | None) -> Colouring:
    """The acquisition score of each point's unit on a colour bar (grey: no score)."""
    known = scores[np.isfinite(scores)]
    low, high = (float(known.min()), float(known.max())) if len(known) else (0.0, 0.0)
    codes = score_codes(scores, low, high)
    digits = tick_digits(low, high)
    mid = (SCORE_LEVELS + 1) // 2
    ticks = [(1, f"{low:.{digits}g}"), (mid, f"{(low + high) / 2:.{digits}g}"), (SCORE_LEVELS, f"{high:.{digits}g}")] \
        if high > low else [(1, f"{low:.{digits}g}")]
    caption = (f"score of each point's {unit or 'unit'} (higher: asked first); {len(known):,} shown points "
               f"scored, {len(scores) - len(known):,} grey (labelled or not a candidate)")
    legend = [("no score", GREY)] if len(known) < len(scores) else []
    return Colouring("score", "Score", caption, codes, score_palette(), legend, ticks=ticks)


def query_colouring(queried: np.ndarray, asked: np.ndarray, units: int, unit: str | None,
                    round_index: int) -> Colouring:
    """Queried points large and magenta, points labelled before blue, the rest dimmed grey."""
    codes = np.where(queried, 2, np.where(asked, 1, 0)).astype(np.uint8)
    counts = np.bincount(codes, minlength=3)
    caption = (f"{counts[2]:,} points of {units:,} {unit or ''} unit(s) selected in round {round_index}, "
               f"to be labelled in round {round_index + 1}").replace("  ", " ")
    legend = [(f"queried ({counts[2]:,})", QUERIED), (f"labelled before ({counts[1]:,})", ASKED),
              (f"other ({counts[0]:,})", GREY)]
    sizes = np.array([1.0, ASKED_SIZE, QUERY_SIZE], dtype=np.float32)[codes]
    return Colouring("queries", "Queries", caption, codes, [GREY, ASKED, QUERIED],
                     [entry for entry, n in zip(legend, counts[::-1]) if n], sizes=sizes)


def colourings(view: SceneView, classes: list[str], colors: list[list[int]]) -> list[Colouring]:
    """Every colouring the view has data for: ground truth, prediction, error, score, queries."""
    found = [class_colouring("truth", "Ground truth", f"ground truth of {view.scene} (the PLY's label)",
                             view.truth, classes, colors, "no ground truth")]
    if view.prediction is not None:
        found.append(class_colouring("prediction", "Prediction", f"prediction of rounds/r{view.round:03d}/model.pt",
                                     view.prediction, classes, colors, "no prediction"))
        found.append(error_colouring(view.error))
    if view.scores is not None:
        found.append(score_colouring(view.scores, view.score_unit))
    if view.queried is not None:
        found.append(query_colouring(view.queried, view.asked, view.query_units, view.query_unit, view.round))
    return found


def _code_type(size: int) -> type:
    return np.uint8 if size <= 256 else np.uint16
