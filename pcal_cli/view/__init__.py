"""``pcal view``: one self-contained HTML page with an interactive 3D view of a scene and a round.

:mod:`pcal_cli.view.data` gathers the per-point arrays of a scene (ground truth, prediction,
error, acquisition score, queried points) and subsamples them; :mod:`pcal_cli.view.overview`
collects the round's summary (per-class IoU, queries per scene, learning curve);
:mod:`pcal_cli.view.html` turns both into the page (plotly, imported only there). Nothing here
imports torch or plotly at module level, so the CLI starts fast.
"""
