"""``pcal view``: the arrays, the page (offline, queried points, legend), bad inputs, a real browser."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pcal_cli.data.ply import read_ply
from pcal_cli.errors import PcalError
from pcal_cli.evaluation.evaluate import evaluate
from pcal_cli.evaluation.report import scene_queries
from pcal_cli.project import Project
from pcal_cli.steps.label import oracle_round
from pcal_cli.steps.score import ScoreSettings, score_round
from pcal_cli.steps.seed import seed_round
from pcal_cli.steps.select import select_round
from pcal_cli.training.supervised import TrainOptions, train
from pcal_cli.view.colours import QUERIED, hex_colour, score_codes
from pcal_cli.view.data import NO_TRUTH, RIGHT, WRONG, default_scene, error_codes, map_unit_scores, subsample

from conftest import project_copy, synthetic_project, tree_bytes

TINY = TrainOptions(cr=0.125, steps=2, batch_size=2, device="cpu")
POINTS = 1500  # per scene; room_000 and room_001 train, room_002 test
CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.filterwarnings("ignore:the budget of:UserWarning")  # tiny scenes buy few regions
TYPES = {"f4": "<f4", "f8": "<f8", "u1": "u1", "i1": "i1", "u2": "<u2", "i2": "<i2", "u4": "<u4", "i4": "<i4"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Two rounds: round 0 (seeded regions) and round 1 (round 0's queries answered), each
    trained, evaluated on the test split, scored and with queries selected."""
    root = synthetic_project(tmp_path_factory.mktemp("view") / "p", 3, POINTS)
    project = Project.open(root)
    seed_round(project, "random", "region", "5%", seed=0)
    for index in (0, 1):
        train(project, index, TINY)
        evaluate(project, index, "test", device="cpu")
        score_round(project, index, ScoreSettings(scorer="margin", unit="region"), device="cpu")
        select_round(project, index, "5%")
        if index == 0:
            oracle_round(project, 0)
    return root


@pytest.fixture
def project(base, tmp_path):
    return project_copy(base, tmp_path)


@pytest.fixture(scope="module")
def page_file(base, tmp_path_factory):
    """The page of the latest round's default scene, written once for the module."""
    from pcal_cli.view.render import write_view

    target = tmp_path_factory.mktemp("page") / "view.html"
    result = write_view(Project.open(base), out=target, device="cpu")
    assert result.path == target
    return target


def figure(page: str, div: str) -> tuple[list[dict], dict]:
    """The data and layout that ``Plotly.newPlot`` gets for the div ``div``."""
    start = page.index("Plotly.newPlot(", page.index(f'id="{div}"'))
    at = page.index(f'"{div}"', start) + len(div) + 2
    decoder = json.JSONDecoder()
    at = re.compile(r"\s*,\s*").match(page, at).end()
    data, at = decoder.raw_decode(page, at)
    at = re.compile(r"\s*,\s*").match(page, at).end()
    layout, _ = decoder.raw_decode(page, at)
    return data, layout


def decode(value) -> np.ndarray:
    """A plotly.js typed-array spec (or a plain list) as a numpy array."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=TYPES[value["dtype"]])
    return np.asarray(value)


def drawn_xyz(data: list[dict]) -> np.ndarray:
    return np.stack([decode(data[0][axis]) for axis in "xyz"], axis=1).astype(np.float32)


def button(layout: dict, label: str) -> dict:
    return next(b for b in layout["updatemenus"][0]["buttons"] if b["label"] == label)


def rows_in(points: np.ndarray, cloud: np.ndarray) -> np.ndarray:
    """Whether each row of ``points`` is a row of ``cloud`` (exact float32 coordinates)."""
    def as_rows(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.float32).view(np.dtype((np.void, 12))).ravel()

    return np.isin(as_rows(points), as_rows(cloud))


# -- pure functions ------------------------------------------------------------------------------


def test_subsample_keeps_every_kept_point_and_is_seeded():
    keep = np.zeros(10_000, dtype=bool)
    keep[np.random.default_rng(3).choice(10_000, 120, replace=False)] = True
    shown = subsample(10_000, keep, 500, seed=0)
    assert len(shown) == 500 and np.all(np.diff(shown) > 0)
    assert keep[shown].sum() == 120
    np.testing.assert_array_equal(shown, subsample(10_000, keep, 500, seed=0))
    assert not np.array_equal(shown, subsample(10_000, keep, 500, seed=1))
    np.testing.assert_array_equal(subsample(10_000, keep, 50), np.flatnonzero(keep))  # more kept than the limit
    np.testing.assert_array_equal(subsample(300, keep[:300], 500), np.arange(300))
    with pytest.raises(PcalError, match="--max-points"):
        subsample(10, keep[:10], 0)


def test_unit_scores_map_to_points_and_errors_to_codes():
    scores = map_unit_scores(np.array([2, 5, 7, -1, 2]), np.array([5, 2, 9]), np.array([0.5, 0.25, 0.75]))
    np.testing.assert_array_equal(scores[[0, 1, 4]], [0.25, 0.5, 0.25])
    assert np.isnan(scores[[2, 3]]).all()
    assert np.isnan(map_unit_scores(np.array([0, 1]), np.array([], dtype=np.int64), np.array([]))).all()
    codes = error_codes(np.array([0, 1, -1, 2]), np.array([0, 2, 1, 2]))
    np.testing.assert_array_equal(codes, [RIGHT, WRONG, NO_TRUTH, RIGHT])
    np.testing.assert_array_equal(score_codes(np.array([0.0, 1.0, np.nan, 0.5]), 0.0, 1.0), [1, 255, 0, 128])


def test_default_scene_is_the_one_with_the_most_queried_points(base):
    project = Project.open(base)
    record = {"queries": [{"scene": "room_000", "points": 5}, {"scene": "room_001", "points": 4},
                          {"scene": "room_001", "points": 3}]}
    assert default_scene(project, record) == "room_001"
    assert default_scene(project, None) == "room_000"
    assert default_scene(project, {"queries": []}) == "room_000"


# -- the page ------------------------------------------------------------------------------------


def test_the_page_is_one_offline_file(page_file):
    page = page_file.read_text()
    assert page.startswith("<!DOCTYPE html>") and "plotly.js v" in page  # the bundle is inlined
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)  # every script inlined
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "", page, flags=re.IGNORECASE | re.DOTALL)
    assert len(markup) < 100_000  # the rest of the page is small: the scripts were all that got removed
    assert not re.search(r"<link\b", markup, re.IGNORECASE)
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", markup, re.IGNORECASE)
    assert not list(page_file.parent.glob(".*.tmp"))


def test_the_page_draws_every_queried_point(base, page_file):
    project = Project.open(base)
    page = page_file.read_text()
    queries = json.loads((project.round_dir(1) / "queries.json").read_text())
    per_scene = {}
    for q in queries["queries"]:
        per_scene[q["scene"]] = per_scene.get(q["scene"], 0) + q["points"]
    scene = max(project.scenes("train"), key=lambda n: per_scene.get(n, 0))
    assert f"scene {scene} (train)" in page
    expected = scene_queries(project, scene, 1)  # pcal report's own reading of the queries
    assert expected.query_mask.sum() > 0
    data, layout = figure(page, "pcal-scene")
    xyz = drawn_xyz(data)
    assert len(xyz) == POINTS and f"showing {POINTS:,} of {POINTS:,} points" in page
    assert rows_in(expected.xyz[expected.query_mask], xyz).all()
    codes = decode(button(layout, "Queries")["args"][0]["marker.color"][0])
    np.testing.assert_array_equal(np.sort(np.flatnonzero(codes == 2)),
                                  np.flatnonzero(rows_in(xyz, expected.xyz[expected.query_mask])))
    assert f"{int(expected.query_mask.sum()):,} queried points, all shown" in page
    assert [b["label"] for b in layout["updatemenus"][0]["buttons"]] == [
        "Ground truth", "Prediction", "Error", "Score", "Queries"]


def test_the_legend_names_the_classes_in_the_project_colours(base, page_file):
    project = Project.open(base)
    page = page_file.read_text()
    data, _ = figure(page, "pcal-scene")
    scene = re.search(r"scene (\w+) \(train\)", page).group(1)
    truth = read_ply(project.scene_path("train", scene)).label
    config = project.config
    legend = {t["name"]: t["marker"]["color"] for t in data[1:] if t.get("visible") is True}  # ground truth first
    present = [config.classes[c] for c in np.unique(truth[truth >= 0])]
    assert present and set(present) <= set(legend)
    for name in present:
        assert legend[name] == hex_colour(config.colors[config.classes.index(name)])
    overview, _ = figure(page, "pcal-overview")
    assert list(overview[0]["y"]) == config.classes  # IoU bars, one per class


def test_the_command_writes_the_default_file_deterministically(pcal, project):
    result = pcal("view", "-p", project.root, "--device", "cpu")
    assert result.code == 0, result.err
    files = sorted((project.root / "report").glob("view_r*.html"))
    assert len(files) == 1 and re.fullmatch(r"view_r001_room_00[01]\.html", files[0].name)
    assert "showing 1,500 of 1,500 points" in result.out and "ground truth, prediction, error, score, queries" \
        in result.out
    first = files[0].read_bytes()
    assert pcal("view", "-p", project.root, "--device", "cpu").code == 0
    assert files[0].read_bytes() == first


def test_max_points_subsamples_but_keeps_the_queries(pcal, project, tmp_path):
    target = tmp_path / "small.html"
    result = pcal("view", "-p", project.root, "--round", "0", "--scene", "room_000", "--max-points", "300",
                  "--out", target, "--device", "cpu")
    assert result.code == 0, result.err
    page = target.read_text()
    data, _ = figure(page, "pcal-scene")
    expected = scene_queries(project, "room_000", 0)
    queried = int(expected.query_mask.sum())
    assert len(drawn_xyz(data)) == max(300, queried)
    assert f"showing {max(300, queried):,} of {POINTS:,} points (seeded subsample)" in page
    assert rows_in(expected.xyz[expected.query_mask], drawn_xyz(data)).all()


def test_a_round_without_a_model_or_a_test_scene_shows_what_it_has(pcal, project, tmp_path):
    (project.round_dir(1) / "model.pt").unlink()
    result = pcal("view", "-p", project.root, "--out", tmp_path)  # a folder: the default name inside
    assert result.code == 0, result.err
    assert "no prediction or error shown" in result.out
    page = next(tmp_path.glob("view_r001_*.html")).read_text()
    _, layout = figure(page, "pcal-scene")
    assert [b["label"] for b in layout["updatemenus"][0]["buttons"]] == ["Ground truth", "Score", "Queries"]

    result = pcal("view", "-p", project.root, "--round", "0", "--scene", "room_002", "--out", tmp_path / "t.html",
                  "--device", "cpu")
    assert result.code == 0, result.err
    _, layout = figure((tmp_path / "t.html").read_text(), "pcal-scene")
    assert [b["label"] for b in layout["updatemenus"][0]["buttons"]] == ["Ground truth", "Prediction", "Error"]


def _strip_round(project: Project) -> None:
    folder = project.round_dir(1)
    (folder / "model.pt").unlink()
    (folder / "queries.json").unlink()
    shutil.rmtree(folder / "scores")


@pytest.mark.parametrize("args, setup, message", [
    (["--round", "9"], None, "round 9 does not exist"),
    (["--scene", "kitchen"], None, "no scene 'kitchen'"),
    (["--scene", "room_001"], lambda p: p.scene_path("train", "room_001").unlink(), "is missing"),
    ([], _strip_round, "nothing to show"),
    (["--max-points", "0"], None, "--max-points must be at least 1"),
    (["--out", "pcal.yaml/view.html"], None, "is not a folder"),
])
def test_bad_inputs_end_with_one_line_and_exit_code_2(pcal, project, args, setup, message, monkeypatch):
    if setup is not None:
        setup(project)
    monkeypatch.chdir(project.root)
    before = tree_bytes(project.root)
    result = pcal("view", "-p", project.root, "--device", "cpu", *args)
    assert result.code == 2
    assert result.err.startswith("error:") and result.err.strip().count("\n") == 0 and message in result.err
    assert "Traceback" not in result.err
    assert tree_bytes(project.root) == before  # nothing written


def test_not_a_project_is_one_line(pcal, tmp_path):
    result = pcal("view", "-p", tmp_path / "nothing")
    assert result.code == 2 and result.err.strip().count("\n") == 0 and "no such project directory" in result.err


# -- a real browser ------------------------------------------------------------------------------

CHECK_HEAD = """<script>
window.pcalErrors = [];
window.addEventListener("error", function (e) { window.pcalErrors.push(String(e.message)); });
window.addEventListener("unhandledrejection", function (e) { window.pcalErrors.push(String(e.reason)); });
(function () {
  var original = console.error;
  console.error = function () {
    window.pcalErrors.push(Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
})();
</script>"""

CHECK_TAIL = """<script>
(async function () {
  var report = {errors: window.pcalErrors, modes: []};
  try {
    var gd = document.getElementById("pcal-scene");
    var buttons = JSON.parse(JSON.stringify(gd.layout.updatemenus[0].buttons));
    report.points = gd._fullData[0].x.length;
    var last = buttons.filter(function (b) { return b.label === "Queries"; });
    var order = buttons.filter(function (b) { return b.label !== "Queries"; }).concat(last);
    for (var i = 0; i < order.length; i++) {  // what clicking each button does, the queries last
      await Plotly.update(gd, order[i].args[0], order[i].args[1]);
      report.modes.push({label: order[i].label, colors: gd._fullData[0].marker.color.length,
                         legend: gd._fullData.filter(function (t) { return t.visible === true; }).length - 1});
    }
  } catch (e) { report.fatal = String(e && e.stack || e); }
  var out = document.createElement("pre");
  out.id = "pcal-check";
  out.style.display = "none";
  out.textContent = "PCAL-CHECK " + JSON.stringify(report);
  document.body.appendChild(out);
})();
</script>"""


def chromium(url: str, screenshot: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Headless Chromium, WebGL in software, no network at all (every host unresolvable)."""
    profile.mkdir()
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
         "--window-size=1280,900", "--virtual-time-budget=15000", f"--screenshot={screenshot}", *extra, url],
        capture_output=True, text=True, timeout=240, check=False)


def console_errors(stderr: str) -> list[str]:
    """Console lines of page errors and failed loads in Chromium's log."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line
            and ("Uncaught" in line or "Error" in line or "Failed to load" in line)]


def pixels_near(image: np.ndarray, colour: str, tolerance: int = 24) -> int:
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image.astype(np.int32) - rgb).max(axis=2) <= tolerance).sum())


def screenshot_rgb(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    image = imread(path)
    if image.dtype != np.uint8:
        image = np.rint(image * 255).astype(np.uint8)
    return image[100:820, :, :3]  # the 3D view (the overview starts lower)


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium)")
def test_a_real_browser_draws_the_points_without_errors(base, page_file, tmp_path):
    project = Project.open(base)
    config = project.config
    page = page_file.read_text()
    scene = re.search(r"scene (\w+) \(train\)", page).group(1)
    truth = read_ply(project.scene_path("train", scene)).label

    shot = tmp_path / "view.png"
    run = chromium(page_file.as_uri(), shot, tmp_path / "profile")
    assert shot.is_file(), run.stderr[-2000:]
    assert not console_errors(run.stderr), console_errors(run.stderr)
    image = screenshot_rgb(shot)
    colours = {hex_colour(config.colors[c]) for c in np.unique(truth[truth >= 0])}
    saturated = [c for c in colours if max(int(c[i:i + 2], 16) for i in (1, 3, 5))
                 - min(int(c[i:i + 2], 16) for i in (1, 3, 5)) > 80]  # not the greys of text and axes
    counts = {c: pixels_near(image, c) for c in saturated}
    assert sum(counts.values()) > 3000, counts  # thousands of pixels in the classes' colours: points drawn
    assert sum(n > 30 for n in counts.values()) >= 3, counts

    checked = tmp_path / "check.html"
    checked.write_text(page.replace("<head>", "<head>\n" + CHECK_HEAD, 1).replace("</body>", CHECK_TAIL + "</body>", 1))
    shot = tmp_path / "queries.png"
    run = chromium(checked.as_uri(), shot, tmp_path / "profile2", "--dump-dom")
    found = re.search(r"PCAL-CHECK (\{.*?\})</pre>", run.stdout)
    assert found, run.stderr[-2000:]
    report = json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    assert report["errors"] == [] and "fatal" not in report, report
    assert [m["label"] for m in report["modes"]] == ["Ground truth", "Prediction", "Error", "Score", "Queries"]
    assert all(m["colors"] == report["points"] == POINTS for m in report["modes"]), report
    assert all(m["legend"] >= 1 for m in report["modes"]), report
    assert not console_errors(run.stderr), console_errors(run.stderr)
    assert pixels_near(screenshot_rgb(shot), QUERIED) > 300  # the queried points, magenta, after the switch
