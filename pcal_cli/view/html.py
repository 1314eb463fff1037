"""The page of ``pcal view``: one self-contained HTML file (plotly.js inlined, no network).

The scene is one plotly ``Scatter3d`` trace (WebGL). Its colourings are palette codes; a row of
buttons swaps the trace's codes, colour scale and marker sizes (``Plotly.update``), and shows
each colouring's own legend (legend-only traces, one per entry). The round overview is a second
figure (IoU per class, learning curve) and a table of the units selected per scene.
plotly is imported inside the functions here, never at module level.
"""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING, Any

import numpy as np

from pcal_cli.view.colours import Colouring, hex_colour
from pcal_cli.view.data import SceneView
from pcal_cli.view.overview import RoundOverview

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

SCENE_DIV = "pcal-scene"
OVERVIEW_DIV = "pcal-overview"
LEGEND_MARKER = 9
CONFIG = {"displaylogo": False, "responsive": True, "scrollZoom": True}
TYPED = {np.dtype(np.uint8): "u1", np.dtype(np.uint16): "u2", np.dtype(np.float32): "f4"}


def typed_array(values: np.ndarray) -> dict[str, str]:
    """A plotly.js typed-array spec (base64 bytes), for arrays inside the buttons' arguments."""
    values = np.ascontiguousarray(values)
    return {"dtype": TYPED[values.dtype], "bdata": base64.b64encode(values.tobytes()).decode("ascii")}


def stepped_scale(palette: list[str]) -> list[list[Any]]:
    """A colour scale that maps code ``i`` (with ``cmin=-0.5``, ``cmax=len - 0.5``) to ``palette[i]``."""
    n = len(palette)
    return [[position, colour] for i, colour in enumerate(palette) for position in (i / n, (i + 1) / n)]


def marker_size(points: int) -> float:
    """Marker size in pixels: larger for small clouds, small enough for 200,000 points."""
    return 4.0 if points <= 20_000 else 2.5 if points <= 100_000 else 1.6


def _point_state(colouring: Colouring, size: float) -> dict[str, Any]:
    """The point trace's marker attributes for one colouring (``Plotly.update`` keys)."""
    ticks = colouring.ticks or []
    return {
        "marker.color": colouring.codes,
        "marker.colorscale": stepped_scale(colouring.palette),
        "marker.cmin": -0.5,
        "marker.cmax": len(colouring.palette) - 0.5,
        "marker.showscale": colouring.ticks is not None,
        "marker.colorbar.tickvals": [code for code, _ in ticks],
        "marker.colorbar.ticktext": [text for _, text in ticks],
        "marker.size": size if colouring.sizes is None else (colouring.sizes * size).astype(np.float32),
    }


def _legend_state(colour: str) -> dict[str, Any]:
    """The same keys for a legend-only trace (its own colour, no scale)."""
    return {"marker.color": colour, "marker.colorscale": None, "marker.cmin": None, "marker.cmax": None,
            "marker.showscale": False, "marker.colorbar.tickvals": None, "marker.colorbar.ticktext": None,
            "marker.size": LEGEND_MARKER}


def _button(active: int, colourings: list[Colouring], size: float) -> dict[str, Any]:
    """One button: every trace's state (all traces listed) and the title, for colouring ``active``."""
    point = _point_state(colourings[active], size)
    states = [point] + [_legend_state(colour) for c in colourings for _, colour in c.legend]
    owners = [active] + [j for j, c in enumerate(colourings) for _ in c.legend]
    update = {key: [_json_value(state[key]) for state in states] for key in point}
    update["visible"] = [True] + [owner == active for owner in owners[1:]]
    chosen = colourings[active]
    return {"label": chosen.label, "method": "update",
            "args": [update, {"title.text": _title(chosen)}]}


def _json_value(value: Any) -> Any:
    return typed_array(value) if isinstance(value, np.ndarray) else value


def _title(colouring: Colouring) -> str:
    return f"<b>{html.escape(colouring.label, quote=False)}</b>: {html.escape(colouring.caption, quote=False)}"


def scene_figure(view: SceneView, colourings: list[Colouring]) -> Figure:
    """The 3D scatter of the shown points, coloured by ``colourings[0]``, with a button per colouring."""
    import plotly.graph_objects as go

    size = marker_size(view.shown)
    first = _point_state(colourings[0], size)
    fig = go.Figure()
    fig.add_trace(go.Scatter3d(
        x=view.xyz[:, 0], y=view.xyz[:, 1], z=view.xyz[:, 2], mode="markers", name="points", showlegend=False,
        marker={"color": first["marker.color"], "colorscale": first["marker.colorscale"], "cmin": first["marker.cmin"],
                "cmax": first["marker.cmax"], "showscale": first["marker.showscale"], "size": first["marker.size"],
                "line": {"width": 0},
                "colorbar": {"title": {"text": "score"}, "tickvals": first["marker.colorbar.tickvals"],
                             "ticktext": first["marker.colorbar.ticktext"], "len": 0.6}},
        hovertemplate="x %{x:.2f}  y %{y:.2f}  z %{z:.2f}<extra></extra>"))
    for j, colouring in enumerate(colourings):
        for name, colour in colouring.legend:
            fig.add_trace(go.Scatter3d(x=[None], y=[None], z=[None], mode="markers", name=name, visible=j == 0,
                                       marker={"color": colour, "size": LEGEND_MARKER}, hoverinfo="skip"))
    axis = {"showbackground": False, "gridcolor": "#e5e5e5", "zerolinecolor": "#d0d0d0"}
    fig.update_layout(
        title={"text": _title(colourings[0]), "x": 0.01, "xanchor": "left", "y": 0.985, "yanchor": "top",
               "font": {"size": 14}},
        height=760, margin={"l": 0, "r": 0, "t": 92, "b": 0}, paper_bgcolor="white", uirevision="pcal-view",
        scene={"aspectmode": "data", "xaxis": {"title": {"text": "x (m)"}, **axis},
               "yaxis": {"title": {"text": "y (m)"}, **axis}, "zaxis": {"title": {"text": "z (m)"}, **axis}},
        legend={"x": 0.01, "y": 0.98, "xanchor": "left", "yanchor": "top", "itemsizing": "constant",
                "itemclick": False, "itemdoubleclick": False, "bgcolor": "rgba(255,255,255,0.85)"},
        updatemenus=[{"type": "buttons", "direction": "right", "x": 0.01, "xanchor": "left", "y": 1.0,
                      "yanchor": "bottom", "pad": {"b": 6}, "active": 0, "showactive": True,
                      "buttons": [_button(j, colourings, size) for j in range(len(colourings))]}],
    )
    return fig


def overview_figure(overview: RoundOverview) -> Figure | None:
    """IoU per class of the round (bars in the class colours) beside the learning curve, or ``None``
    when nothing is evaluated."""
    if overview.iou_split is None and not overview.curves:
        return None
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    iou_title = f"IoU per class, round {overview.round} ({overview.iou_split})" if overview.iou_split \
        else f"round {overview.round} not evaluated"
    fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55], horizontal_spacing=0.16,
                        subplot_titles=(iou_title, "learning curve"))
    if overview.iou_split is not None:
        percent = [None if v is None else 100.0 * v for v in overview.iou]
        fig.add_trace(go.Bar(y=overview.classes, x=percent, orientation="h", showlegend=False,
                             marker={"color": [hex_colour(c) for c in overview.colors]},
                             hovertemplate="%{y}: %{x:.1f}%<extra></extra>"), row=1, col=1)
        if overview.full_iou is not None:
            full = [None if v is None else 100.0 * v for v in overview.full_iou]
            fig.add_trace(go.Scatter(y=overview.classes, x=full, mode="markers", name="full supervision",
                                     marker={"symbol": "line-ns-open", "size": 14, "color": "black",
                                             "line": {"width": 2}},
                                     hovertemplate="%{y}: full %{x:.1f}%<extra></extra>"), row=1, col=1)
    for i, line in enumerate(overview.curves):
        colour = ("#1f77b4", "#ff7f0e")[i % 2]
        fig.add_trace(go.Scatter(x=line.labelled_percent, y=[100.0 * m for m in line.miou], mode="lines+markers",
                                 name=f"mIoU ({line.split})", line={"color": colour}, customdata=line.rounds,
                                 hovertemplate="round %{customdata}: %{y:.1f}% at %{x:.3f}% labelled"
                                               "<extra></extra>"), row=1, col=2)
        if overview.round in line.rounds:
            at = line.rounds.index(overview.round)
            fig.add_trace(go.Scatter(x=[line.labelled_percent[at]], y=[100.0 * line.miou[at]], mode="markers",
                                     name=f"round {overview.round} ({line.split})", hoverinfo="skip",
                                     marker={"symbol": "star", "size": 15, "color": colour}), row=1, col=2)
        if line.full_miou is not None:
            fig.add_hline(y=100.0 * line.full_miou, line={"dash": "dash", "color": colour}, row=1, col=2,
                          annotation_text=f"full supervision ({line.split})", annotation_position="bottom right")
    fig.update_xaxes(title_text="IoU (%)", range=[0, 100], row=1, col=1)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_xaxes(title_text="labelled training points (%)", row=1, col=2)
    fig.update_yaxes(title_text="mIoU (%)", rangemode="tozero", row=1, col=2)
    fig.update_layout(height=max(380, 24 * len(overview.classes) + 140), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      paper_bgcolor="white", plot_bgcolor="#fafafa", legend={"orientation": "h", "y": -0.18})
    return fig


def selection_table(overview: RoundOverview, current: str) -> str:
    """The units ``queries.json`` selected per scene, as an HTML table (the viewed scene in bold)."""
    if overview.queries is None:
        return ""
    q = overview.queries
    unit = q.get("unit") or "unit"
    head = (f"<p>{html.escape(str(q.get('scorer')))} scores, {html.escape(str(q.get('selector')))} selection, "
            f"budget {html.escape(str(q.get('budget')))}: {_count(q.get('spent_points'))} of "
            f"{_count(q.get('budget_points'))} points spent, {unit} units"
            + (f" of {html.escape(str(q.get('cell')))} m" if unit == "cell" else "") + "</p>")
    current_row = ' class="current"'
    rows = "".join(
        f"<tr{current_row if s.scene == current else ''}><td>{html.escape(s.scene)}</td>"
        f"<td>{s.units:,}</td><td>{s.points:,}</td><td>{s.best_score:.4g}</td></tr>"
        for s in overview.selection)
    total = (f"<tr class=\"total\"><td>total</td><td>{sum(s.units for s in overview.selection):,}</td>"
             f"<td>{sum(s.points for s in overview.selection):,}</td><td></td></tr>")
    return (head + "<table><thead><tr><th>scene</th><th>units</th><th>points</th><th>best score</th></tr></thead>"
            f"<tbody>{rows}{total}</tbody></table>")


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 1.5rem 2rem;
       color: #222; background: white; }
h1 { font-size: 1.35rem; margin: 1rem 0 0.3rem; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 0.4rem; border-top: 1px solid #ddd; padding-top: 1rem; }
p.counts { margin: 0.2rem 0; color: #444; }
ul.notes { color: #8a5a00; margin: 0.3rem 0; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { padding: 0.2rem 0.8rem; border-bottom: 1px solid #e5e5e5; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.current td { font-weight: bold; }
tr.total td { border-top: 1px solid #999; }
footer { margin-top: 1.5rem; color: #777; font-size: 0.8rem; }
"""


def build_page(view: SceneView, overview: RoundOverview, colourings: list[Colouring], *, project: str,
               version: str) -> str:
    """The whole HTML page: header with the point counts, the 3D view, the round overview."""
    import plotly
    import plotly.io as pio

    scene_html = pio.to_html(scene_figure(view, colourings), full_html=False, include_plotlyjs=True,
                             div_id=SCENE_DIV, config=CONFIG)
    figure = overview_figure(overview)
    overview_html = "" if figure is None else pio.to_html(figure, full_html=False, include_plotlyjs=False,
                                                          div_id=OVERVIEW_DIV, config=CONFIG)
    counts = (f"showing {view.shown:,} of {view.total_points:,} points"
              + ("" if view.shown == view.total_points else " (seeded subsample)")
              + ("" if view.queried is None else f"; {view.queried_points:,} queried points, all shown"))
    notes = view.notes + overview.notes
    notes_html = "" if not notes else "<ul class=\"notes\">" + "".join(
        f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
    miou = "" if overview.miou is None else f" mIoU {100.0 * overview.miou:.1f}% ({overview.iou_split})."
    title = f"pcal view: {project}, round {view.round}, {view.scene}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{html.escape(project)}: round {view.round}, scene {html.escape(view.scene)} ({html.escape(view.split)})</h1>
<p class="counts" id="pcal-counts">{html.escape(counts)}</p>
{notes_html}
{scene_html}
<h2>Round {view.round} overview</h2>
<p>Per-class IoU of rounds/r{view.round:03d}/metrics.json and the learning curve over the rounds.{html.escape(miou)}</p>
{overview_html}
<h3>Units selected per scene (queries.json of round {view.round})</h3>
{selection_table(overview, view.scene) or "<p>nothing selected in this round yet.</p>"}
<footer>written by pcal {html.escape(version)} with plotly {html.escape(plotly.__version__)};
plotly.js is inlined, so this file opens offline. Drag to rotate, scroll to zoom, right-drag to pan.</footer>
</body>
</html>
"""
