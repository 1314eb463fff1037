"""``pcal report``: data collection, learning-curve aggregation, PNGs and the command."""

import json
import shutil

import numpy as np
import pytest
import typer
from matplotlib.image import imread
from rich.console import Console
from typer.testing import CliRunner

from pcal_cli.atomic import write_json, write_npy
from pcal_cli.cli import report as report_cli
from pcal_cli.data.ply import read_ply
from pcal_cli.errors import PcalError
from pcal_cli.evaluation import plots
from pcal_cli.data.ply import ply_vertex_count
from pcal_cli.evaluation.report import collect_run, curve, group_runs, scene_queries
from pcal_cli.prepare import PrepareOptions, prepare_project
from pcal_cli.project import Project
from pcal_cli.units import unit_ids

POINTS = 1000  # per scene; room_000 and room_001 are the training split, room_002 the test split
TRAIN_POINTS = 2 * POINTS
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("template") / "p"
    prepare_project("synthetic", None, root, {"scenes": 3, "points": POINTS}, PrepareOptions(regions="none"))
    return root


def make_run(template, root, *, method="random", seed=0, mious=(0.2, 0.3, 0.4), full=0.5,
             evaluated=None, unit="point", per_round=100):
    """A fake AL run: round r knows the first (r + 1) * per_round points of room_000 (+ 10 of room_001)."""
    shutil.copytree(template, root)
    project = Project.open(root)
    classes = project.config.classes
    evaluated = range(len(mious)) if evaluated is None else evaluated
    ledger = []
    for r, miou in enumerate(mious):
        folder = project.round_dir(r)
        labels = np.full(POINTS, -1, dtype=np.int16)
        labels[:(r + 1) * per_round] = 1
        write_npy(folder / "labels" / "room_000.npy", labels)
        other = np.full(POINTS, -1, dtype=np.int16)
        other[:10] = 2
        write_npy(folder / "labels" / "room_001.npy", other)
        scenes = {"room_000": {"points": per_round, "units": per_round}}
        if r == 0:
            scenes["room_001"] = {"points": 10, "units": 10}
        source = "seed" if r == 0 else "oracle"
        write_json(folder / "labelling.json", {"round": r, "source": source, "unit": unit,
                                               "points_added": sum(s["points"] for s in scenes.values()),
                                               "scenes": scenes})
        for scene, counts in scenes.items():
            ledger.append({"round": r, "scene": scene, "unit": unit, "units": counts["units"],
                           "points": counts["points"], "source": source})
        write_json(folder / "round.json", {"method": method, "scorer": "margin", "selector": "topk", "unit": unit,
                                           "budget": "100", "seed": seed, "train": {}, "pcal_version": "0"})
        if r in evaluated:
            write_json(folder / "metrics.json", {"test": _metrics(classes, miou, r)})
    if full is not None:
        write_json(root / "full" / "metrics.json", {"test": _metrics(classes, full, None)})
    (root / "ledger.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ledger))
    return project


def _metrics(classes, miou, round_index):
    iou = {name: None for name in classes}
    iou["floor"], iou["wall"] = miou + 0.1, miou - 0.1
    return {"miou": miou, "oa": miou + 0.3, "macc": miou, "iou": iou, "points": POINTS, "split": "test",
            "round": round_index, "labelled_points": 0, "labelled_percent": 0.0}


@pytest.fixture
def cli(monkeypatch):
    """Run ``report`` through its own Typer app; output on a wide console."""
    monkeypatch.setattr(report_cli, "out", Console(width=200, highlight=False))
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """A root callback so 'report' stays a named subcommand, as in pcal."""

    report_cli.register(app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["report", *map(str, args)])


def assert_png(path):
    data = path.read_bytes()
    assert len(data) > 0 and data[:8] == PNG_SIGNATURE
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    return image


# -- data collection ------------------------------------------------------------------------------


def test_training_points_come_from_the_ply_headers(template):
    project = Project.open(template)
    path = project.scene_path("train", "room_000")
    assert ply_vertex_count(path) == len(read_ply(path)) == POINTS
    assert project.point_count("train") == TRAIN_POINTS


def test_rows_give_labelled_share_additions_and_ratio_to_full(template, tmp_path):
    make_run(template, tmp_path / "run", method="margin", seed=4, mious=(0.2, 0.3, 0.45), full=0.5)
    run = collect_run(tmp_path / "run")
    assert (run.method, run.seed, run.split, run.training_points) == ("margin", 4, "test", TRAIN_POINTS)
    assert [row.round for row in run.rows] == [0, 1, 2]
    assert [row.labelled_points for row in run.rows] == [110, 210, 310]
    assert [row.labelled_percent for row in run.rows] == pytest.approx([5.5, 10.5, 15.5])
    assert [(row.points_added, row.units_added, row.unit, row.source) for row in run.rows] == [
        (110, 110, "point", "seed"), (100, 100, "point", "oracle"), (100, 100, "point", "oracle")]
    assert [row.ratio_to_full for row in run.rows] == pytest.approx([0.4, 0.6, 0.9])
    assert run.rows[2].evaluation.iou["floor"] == pytest.approx(0.55)
    assert run.full.miou == 0.5
    budget = {(line.unit, line.source): (line.events, line.units, line.points) for line in run.budget}
    assert budget == {("point", "oracle"): (2, 200, 200), ("point", "seed"): (1, 110, 110)}
    assert run.ledger_points == 310 and run.notes == []


def test_missing_metrics_are_kept_as_gaps(template, tmp_path):
    make_run(template, tmp_path / "run", mious=(0.2, 0.3, 0.4), evaluated={0, 2}, full=None)
    run = collect_run(tmp_path / "run")
    assert [row.miou for row in run.rows] == [0.2, None, 0.4]
    assert [row.ratio_to_full for row in run.rows] == [None, None, None]
    assert [row.round for row in run.evaluated] == [0, 2]
    assert any("round(s) 1 not evaluated on 'test'" in note for note in run.notes)
    assert any("no full-supervision reference" in note for note in run.notes)
    assert [p.round for p in curve([run])] == [0, 2]
    # another split has no metrics at all: every round is a gap, nothing crashes
    assert all(row.evaluation is None for row in collect_run(tmp_path / "run", split="val").rows)


def test_method_falls_back_to_the_folder_name(template, tmp_path):
    project = make_run(template, tmp_path / "my_run")
    for r in project.rounds():
        (project.round_dir(r) / "round.json").unlink()
    run = collect_run(tmp_path / "my_run")
    assert run.method == "my_run" and run.seed is None


def test_no_rounds_is_a_clear_error(template, tmp_path, cli):
    shutil.copytree(template, tmp_path / "fresh")
    with pytest.raises(PcalError, match="nothing to report: no labelling rounds"):
        collect_run(tmp_path / "fresh")
    result = cli("-p", tmp_path / "fresh")
    assert isinstance(result.exception, PcalError)
    assert "nothing to report" in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "fresh" / "report").exists()


# -- several seeds and methods --------------------------------------------------------------------

SEEDS = {"random": [(0.10, 0.20), (0.12, 0.26), (0.14, 0.23)], "margin": [(0.10, 0.30), (0.13, 0.33), (0.16, 0.39)]}


@pytest.fixture
def six_runs(template, tmp_path):
    paths = []
    for method, series in SEEDS.items():
        for seed, mious in enumerate(series):
            path = tmp_path / f"{method}_s{seed}"
            make_run(template, path, method=method, seed=seed, mious=mious, full=0.5)
            paths.append(path)
    return paths


def test_runs_are_grouped_by_method_with_mean_std_min_max(six_runs):
    groups = group_runs([collect_run(p) for p in reversed(six_runs)])
    assert list(groups) == ["margin", "random"]
    assert [r.seed for r in groups["margin"]] == [0, 1, 2]
    for method, series in SEEDS.items():
        points = curve(groups[method])
        assert [p.round for p in points] == [0, 1] and [p.runs for p in points] == [3, 3]
        for point, values in zip(points, np.array(series).T):
            assert point.miou_mean == pytest.approx(values.mean())
            assert point.miou_std == pytest.approx(values.std(ddof=1))
            assert (point.miou_min, point.miou_max) == pytest.approx((values.min(), values.max()))
        assert points[1].labelled_percent == pytest.approx(10.5)


def test_learning_curve_draws_one_series_per_method(six_runs, tmp_path):
    groups = group_runs([collect_run(p) for p in six_runs])
    target = tmp_path / "out" / "learning_curve.png"
    drawn = plots.learning_curve(groups, target)
    assert list(drawn.series) == ["margin", "random"]
    assert [p.miou_mean for p in drawn.series["margin"]] == pytest.approx([0.13, 0.34])
    assert drawn.full_miou == pytest.approx(0.5) and drawn.band == "min-max over runs"
    assert_png(target)
    assert [p.name for p in target.parent.iterdir()] == ["learning_curve.png"]  # no temporary left


def _legend(fig) -> list[str]:
    return [text.get_text() for text in fig.axes[0].get_legend().get_texts()]


def _caption(fig) -> str:
    return " ".join(text.get_text() for text in fig.axes[0].texts)


def test_a_half_point_step_is_not_a_cliff(template, tmp_path):
    make_run(template, tmp_path / "run", mious=(0.300, 0.302, 0.305), full=None)
    fig, drawn = plots.curve_figure(group_runs([collect_run(tmp_path / "run")]))
    low, high = fig.axes[0].get_ylim()
    assert high - low == pytest.approx(plots.MIN_Y_SPAN) and low < 30.0 and 30.5 < high
    assert (low, high) == pytest.approx(drawn.ylim)
    assert drawn.band == "" and not fig.axes[0].collections  # one run: no spread band drawn
    assert _legend(fig) == ["random (1 run, unit point)"]
    assert "band" not in _caption(fig) and "one run" in _caption(fig)


def test_several_runs_get_a_band_named_in_the_legend(six_runs):
    fig, drawn = plots.curve_figure(group_runs([collect_run(p) for p in six_runs]))
    ax = fig.axes[0]
    assert len(ax.collections) == 2 and drawn.band == plots.BAND  # one min-max band per method
    assert _legend(fig) == ["margin (3 runs, unit point; band: min-max)", "random (3 runs, unit point; band: min-max)",
                            "full supervision (50.0)"]
    assert "band: min-max over runs" in _caption(fig)
    low, high = ax.get_ylim()  # the data (10..50) padded, wider than the minimum span
    assert low < 10.0 and high > 50.0 and high - low < 50.0


def test_y_limits_keep_at_least_the_minimum_span_inside_0_100():
    assert plots.y_limits(np.array([30.0, 30.5])) == pytest.approx((20.25, 40.25))
    assert plots.y_limits(np.array([1.0, 2.0])) == pytest.approx((0.0, 20.0))
    assert plots.y_limits(np.array([99.0, 99.5])) == pytest.approx((80.0, 100.0))
    assert plots.y_limits(np.array([0.0, 100.0])) == pytest.approx((0.0, 100.0))
    assert plots.y_limits(np.array([np.nan])) == (0.0, 100.0)


def test_learning_curve_refuses_when_nothing_is_evaluated(template, tmp_path):
    make_run(template, tmp_path / "run", evaluated=set())
    with pytest.raises(PcalError, match="no evaluated round"):
        plots.learning_curve(group_runs([collect_run(tmp_path / "run")]), tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_cli_compares_several_projects(six_runs, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli(*six_runs)
    assert result.exit_code == 0, result.output
    assert "13.0 ± 3.0 @ 5.50%" in result.output  # margin, round 0: 0.10, 0.13, 0.16
    assert "34.0 ± 4.6 @ 10.50%" in result.output  # margin, round 1: 0.30, 0.33, 0.39
    assert "23.0 ± 3.0 @ 10.50%" in result.output  # random, round 1
    assert_png(tmp_path / "pcal_report" / "learning_curve.png")


def test_cli_several_projects_refuse_show_queries(six_runs, cli):
    result = cli(*six_runs[:2], "--show-queries", "room_000")
    assert isinstance(result.exception, PcalError) and "one project" in str(result.exception)


# -- one project ----------------------------------------------------------------------------------


def test_cli_one_project_tables_and_pngs(template, tmp_path, cli):
    project = make_run(template, tmp_path / "run", mious=(0.2, 0.3, 0.45), full=0.5)
    write_json(project.round_dir(2) / "queries.json", {
        "round": 2, "unit": "point", "cell": None, "scorer": "margin", "selector": "topk", "budget_points": 3,
        "spent_points": 3, "queries": [{"scene": "room_000", "unit": u, "points": 1, "score": 0.5, "rank": i}
                                       for i, u in enumerate((400, 401, 402))]})
    result = cli("-p", tmp_path / "run", "--show-queries", "room_000")
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("310", "15.500", "90.0%", "IoU per class, round 2", "budget spent (ledger)", "oracle", "seed"):
        assert text in out
    assert_png(tmp_path / "run" / "report" / "learning_curve.png")
    assert_png(tmp_path / "run" / "report" / "queries_room_000.png")
    assert sorted(p.name for p in (tmp_path / "run" / "report").iterdir()) == [
        "learning_curve.png", "queries_room_000.png"]


def test_cli_project_without_metrics_explains_and_writes_no_curve(template, tmp_path, cli):
    make_run(template, tmp_path / "run", evaluated=set(), full=None)
    result = cli("-p", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "no round evaluated on 'test' yet" in result.output and "n/a" in result.output
    assert not (tmp_path / "run" / "report" / "learning_curve.png").exists()


# -- queried points -------------------------------------------------------------------------------


def _queries(project, round_index, unit, items, cell=None):
    write_json(project.round_dir(round_index) / "queries.json", {
        "round": round_index, "unit": unit, "cell": cell, "scorer": "margin", "selector": "topk",
        "budget_points": 0, "spent_points": 0,
        "queries": [{"scene": s, "unit": u, "points": 1, "score": 1.0, "rank": i} for i, (s, u) in enumerate(items)]})


def test_query_mask_is_exactly_the_unlabelled_points_of_the_selected_units(template, tmp_path):
    project = make_run(template, tmp_path / "run", mious=(0.2, 0.3))  # round 1 knows points 0..199
    labels = np.load(project.round_dir(1) / "labels" / "room_000.npy")
    labels[260] = -2  # asked before, no valid class: never asked again
    write_npy(project.round_dir(1) / "labels" / "room_000.npy", labels)
    _queries(project, 1, "point", [("room_000", 3), ("room_000", 250), ("room_000", 260), ("room_000", 999),
                                   ("room_001", 7), ("room_001", 17)])
    got = scene_queries(project, "room_000")
    assert got.round == 1 and got.unit == "point" and got.units == 4
    assert np.flatnonzero(got.query_mask).tolist() == [250, 999]  # points 3 and 260 were asked already
    assert np.flatnonzero(got.labelled_mask).tolist() == list(range(200)) + [260]
    assert np.flatnonzero(scene_queries(project, "room_001").query_mask).tolist() == [17]  # 7 known


def test_query_mask_for_cells_and_rounds(template, tmp_path):
    project = make_run(template, tmp_path / "run", mious=(0.2, 0.3))
    scene = read_ply(project.scene_path("train", "room_001"))
    ids = unit_ids(scene, "cell", 0.5)
    chosen = np.unique(ids)[[0, 5]]
    _queries(project, 0, "cell", [("room_001", int(c)) for c in chosen] + [("room_000", int(chosen[0]))], cell=0.5)
    got = scene_queries(project, "room_001", 0)
    expected = np.isin(ids, chosen)
    expected[:10] = False  # room_001's first 10 points are labelled in round 0
    assert np.array_equal(got.query_mask, expected) and got.query_mask.any()
    with pytest.raises(PcalError, match="no queries.json"):
        scene_queries(project, "room_001", 1)
    with pytest.raises(PcalError, match="not a training scene"):
        scene_queries(project, "room_002")


def test_scene_png_draws_every_query_point_when_subsampled(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 5, size=(5000, 3)).astype(np.float32)
    query = np.zeros(5000, dtype=bool)
    query[[10, 20, 4000]] = True
    target = tmp_path / "q.png"
    drawn = plots.scene_queries(xyz, None, query, target, "test scene", max_points=500)
    assert len(drawn) == 500 and set(np.flatnonzero(query)) <= set(drawn.tolist())
    assert_png(target)
    with pytest.raises(PcalError, match="query mask"):
        plots.scene_queries(xyz, None, query[:10], tmp_path / "bad.png", "bad")


def test_cli_round_option_and_bad_input_fail_before_writing(template, tmp_path, cli):
    make_run(template, tmp_path / "run", mious=(0.2, 0.3, 0.45))
    result = cli("-p", tmp_path / "run", "--round", "1")
    assert result.exit_code == 0 and "IoU per class, round 1" in result.output
    for args, message in ((("--round", "7"), "round 7 does not exist"),
                          (("--show-queries", "room_000"), "no round has queries.json"),
                          (("--split", "nope"), "unknown split 'nope'")):
        shutil.rmtree(tmp_path / "run" / "report", ignore_errors=True)
        result = cli("-p", tmp_path / "run", *args)
        assert isinstance(result.exception, PcalError) and message in str(result.exception)
        assert result.output == "" and not (tmp_path / "run" / "report").exists()
    result = cli()
    assert isinstance(result.exception, PcalError) and "no project given" in str(result.exception)


def test_ahead_of_random_needs_more_than_randoms_spread():
    from pcal_cli.evaluation.report import CurvePoint, ahead_of_random

    random = CurvePoint(round=1, labelled_percent=1.0, miou_mean=0.50, miou_std=0.02, miou_min=0.48,
                        miou_max=0.52, runs=3)
    close = CurvePoint(1, 1.0, 0.515, 0.01, 0.5, 0.53, 3)
    clear = CurvePoint(1, 1.0, 0.53, 0.01, 0.52, 0.54, 3)
    assert ahead_of_random(close, random) is False and ahead_of_random(clear, random) is True
    assert ahead_of_random(clear, CurvePoint(1, 1.0, 0.5, 0.0, 0.5, 0.5, 1)) is None  # one random run: unknown
