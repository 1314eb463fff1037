"""The active learning benchmark: methods x seeds x rounds with `pcal compare`, fair by construction.

Every method of a track starts from the same round 0 (drawn, trained and evaluated once per seed),
spends the same points per round, fine-tunes the previous round's network with the same schedule,
and is evaluated on the network it hands to the user; mIoU is over the classes present in the
test ground truth. The full-supervision reference is trained once per seed with the profile's
`full_steps` (or for seed 0 only, with the profile's `reference_seeds=1`), and seed 0's again with
twice as many steps (the convergence check, unless the profile turns it off).

    .venv/bin/python benchmarks/al_benchmark.py --profile synthetic --workers 2
    .venv/bin/python benchmarks/al_benchmark.py --profile scannet --data ../shared/data
    .venv/bin/python benchmarks/al_benchmark.py --profile smoke --out /tmp/smoke      # minutes, CI-sized
    .venv/bin/python benchmarks/al_benchmark.py --render-docs                         # tables -> docs

Each profile writes `benchmarks/results/<profile>.json` (or `--results`): the machine, the
command, the commit, the settings, per track x method x seed x round the points bought, their
void share, the labelled share, mIoU and per-class IoU, the references and the convergence check.
A rerun continues what is missing (the project and the comparisons live in `--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
MARK = "<!-- al_benchmark:{}:{} -->"


@dataclass(frozen=True)
class Track:
    """One `pcal compare`: methods, their shared seed and the per-round budgets (points)."""

    name: str
    methods: tuple[str, ...]
    seed_unit: str
    seed_budget: str
    budget: str  # per round, comma list: round r uses item r-1 (the last repeats)
    rounds: int
    seed_method: str = "random"
    note: str = ""
    seeds: int | None = None  # None: the profile's
    train: dict[str, Any] = field(default_factory=dict)  # more overrides for this track
    continues: str | None = None  # a track of the profile whose finished runs this one copies, then adds `rounds`


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    prepare: tuple[str, ...]  # pcal prepare arguments (before -p); {data} is --data
    tracks: tuple[Track, ...]
    seeds: int = 3
    train: dict[str, Any] = field(default_factory=dict)  # overrides of the project's training profile
    needs: str | None = None  # a folder under --data the profile reads
    split_file: str | None = None  # YAML written beside the project and passed as --split-file
    classes_file: str | None = None  # YAML written beside the project and passed as --classes
    reference_seeds: int | None = None  # references trained (seeds 0..n-1; None: every seed); later seeds reuse seed 0's
    convergence_check: bool = True  # train seed 0's reference again with twice the steps


REGION_METHODS = ("random", "margin", "entropy", "coreset", "redal")
POINT_METHODS = ("hpal_random", "hpal_mmu", "hpal", "jopro")  # random and margin points, HPAL, JoPro
# the synthetic profile adds the papers' ablations: ReDAL's ENT+Region (+Div), HPAL's HMMU (+FDS)
REDAL_ABLATIONS = ("redal_ent", "redal_ent_div")
HPAL_ABLATIONS = ("hpal_hmmu", "hpal_hmmu_fds")
# region unit: 0.5 % seed, then to 1, 2, 3 and 5 % labelled; point unit: 0.05 % seed, then to 0.1, 0.2, 0.5, 1 %
REGION_BUDGETS = ("0.5%", "0.5%,1%,1%,2%", 4)
POINT_BUDGETS = ("0.05%", "0.05%,0.1%,0.3%,0.5%", 4)

# SeedAL's protocol: whole rooms as the seed (random or SeedAL's), then margin regions
SEED_TRACKS = (Track("seed_random", ("margin",), "scene", "7%", "1%", 2,
                     note="random whole rooms as the seed (about one room), then margin regions"),
               Track("seed_seedal", ("margin",), "scene", "7%", "1%", 2, seed_method="seedal",
                     note="SeedAL's rooms as the seed, then margin regions"))

IGN_TILES = ("test_data_77050_627755_LA93_IGN69", "test_data_77050_627760_LA93_IGN69",
             "test_data_77055_627755_LA93_IGN69", "test_data_77055_627760_LA93_IGN69")

PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("smoke", "6 tiny synthetic rooms, 2 methods, 2 seeds, 1 round, a few steps: checks the pipeline",
            ("synthetic", "--scenes", "6", "--points", "1500", "--seed", "0"),
            (Track("region", ("random", "margin"), "region", "5%", "3%", 1),
             Track("region_more", ("random", "margin"), "region", "5%", "2%", 1, continues="region",
                   note="the runs of `region`, one round more")),
            seeds=2, train={"cr": 0.125, "steps": 6, "finetune-steps": 4, "full-steps": 6}),
    Profile("synthetic", "24 synthetic rooms of 8,000 points (16 train, 8 test), the synthetic training profile",
            ("synthetic", "--scenes", "24", "--points", "8000", "--seed", "0"),
            (Track("region", REGION_METHODS + REDAL_ABLATIONS, "region", REGION_BUDGETS[0], REGION_BUDGETS[1],
                   REGION_BUDGETS[2]),
             Track("point", POINT_METHODS[:2] + HPAL_ABLATIONS + POINT_METHODS[2:], "point", POINT_BUDGETS[0],
                   POINT_BUDGETS[1], POINT_BUDGETS[2]),
             Track("region_ft2x", ("margin",), "region", REGION_BUDGETS[0], REGION_BUDGETS[1], REGION_BUDGETS[2],
                   seeds=1, train={"finetune-steps": 600},
                   note="margin, seed 0, with twice the fine-tune steps: is the round schedule converged?"),
             Track("point_long", ("hpal_random", "hpal_mmu", "jopro"), "point", "0.5%", "0.5%", 1,
                   train={"steps": 2400, "finetune-steps": 1200},
                   note="a long schedule: random points 0.5 % trained 2,400 steps, then one round to 1 % "
                        "fine-tuned 1,200 steps"),
             Track("point_long3", ("hpal_random", "hpal_mmu", "jopro"), "point", "0.5%", "2%", 1,
                   continues="point_long", train={"steps": 2400, "finetune-steps": 2400},
                   note="`point_long`'s runs, then one round buying 2 % (to 3 %) fine-tuned 2,400 steps"),
             *SEED_TRACKS)),
    Profile("synthetic_fine", "the synthetic profile's 24 rooms with 0.5 m supervoxels (2,212 training regions, "
            "median 50 points, against 564 of 191 points): a 0.5 % round buys about 13 regions instead of 3",
            ("synthetic", "--scenes", "24", "--points", "8000", "--seed", "0", "--seed-resolution", "0.5",
             "--min-region", "25"),
            (Track("region", REGION_METHODS, "region", REGION_BUDGETS[0], REGION_BUDGETS[1], REGION_BUDGETS[2]),
             *SEED_TRACKS)),
    Profile("scannet", "ScanNet v2 samples: train scene0000_00, test scene0000_01 (two scans of one room); "
            "10 cm voxels and 0.4 m supervoxels (one 81k-point scan: 1 m supervoxels would give a 0.5 % budget "
            "less than one region)",
            ("scannet", "{data}/scannet", "--voxel-size", "0.1", "--seed-resolution", "0.4"),
            (Track("region", REGION_METHODS, "region", REGION_BUDGETS[0], REGION_BUDGETS[1], 3),
             Track("point", POINT_METHODS, "point", POINT_BUDGETS[0], POINT_BUDGETS[1], 3)),
            needs="scannet", split_file="train: [scene0000_00]\ntest: [scene0000_01]\n",
            train={"full-steps": 2000}, reference_seeds=1, convergence_check=False),
    Profile("ign", "IGN LiDAR HD: three 50 m tiles train, one test; ground / vegetation / building; 2 m cells "
            "as regions, training on crops of 8,000 points (5x faster steps than 20,000 on 2 cores)",
            ("folder", "{data}/aerial_ign", "--regions", "cells", "--cell", "2.0"),
            (Track("region", REGION_METHODS, "region", REGION_BUDGETS[0], REGION_BUDGETS[1], 3),
             Track("point", POINT_METHODS, "point", POINT_BUDGETS[0], POINT_BUDGETS[1], 3)),
            needs="aerial_ign",
            split_file=f"train: [{', '.join(IGN_TILES[:3])}]\ntest: [{IGN_TILES[3]}]\n",
            classes_file="classes: [ground, vegetation, building]\n"
                         "ids: {2: ground, 3: vegetation, 4: vegetation, 5: vegetation, 6: building}\n"
                         "ignore_ids: [1, 9, 17, 64, 65, 66, 67]\n",
            train={"max-points": 8000, "full-steps": 2000}, reference_seeds=1, convergence_check=False),
)}
#: Profiles the issue names that the shared data cannot support, and why.
NOT_POSSIBLE = {"kitti": "../shared/data holds one SemanticKITTI frame (sequence 00, frame 0): no second frame "
                         "for a test split, and pcal cannot yet split one scan into train and test areas"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), help="the benchmark to run")
    parser.add_argument("--out", type=Path, help="working folder (default: bench_al/<profile>)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument("--results", type=Path, help="results JSON (default: benchmarks/results/<profile>.json)")
    parser.add_argument("--seeds", type=int, help="seeds per method (default: the profile's)")
    parser.add_argument("--tracks", help="comma list of the profile's tracks to run (default: all)")
    parser.add_argument("--methods", help="comma list: run only these of each track's methods (default: all)")
    parser.add_argument("--workers", type=int, default=max(1, len(_cpus())), help="trainings side by side")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--collect-only", action="store_true", help="run nothing: write the results JSON from the "
                        "runs already in --out (after runs made in several calls)")
    parser.add_argument("--render-docs", action="store_true", help="rewrite the tables in docs/benchmarks.md from "
                        "every benchmarks/results/*.json (with --profile: after running it)")
    args = parser.parse_args()
    if args.profile is None and not args.render_docs:
        parser.error("give --profile (or --render-docs)")
    if args.profile is not None:
        profile = PROFILES[args.profile]
        results = args.results or RESULTS / f"{profile.name}.json"
        run_profile(profile, args.out or Path("bench_al") / profile.name, args.data, results, args)
    if args.render_docs:
        render_docs(sorted(RESULTS.glob("*.json")))


def run_profile(profile: Profile, out: Path, data: Path, results: Path, args: argparse.Namespace) -> None:
    if profile.needs and not (data / profile.needs).is_dir():
        raise SystemExit(f"al_benchmark: {data / profile.needs} not found (profile {profile.name} needs it)")
    began = time.time()
    project = out / "project"
    out.mkdir(parents=True, exist_ok=True)
    if args.collect_only and not (project / "pcal.yaml").is_file():
        raise SystemExit(f"al_benchmark: no project in {out} to collect from")
    if not (project / "pcal.yaml").is_file():
        _prepare(profile, out, project, data)
    seeds = args.seeds or profile.seeds
    wanted = set(args.tracks.split(",")) if args.tracks else None
    if args.methods:
        profile = only_methods(profile, args.methods.split(","))
    timings = {}
    for index, track in enumerate(profile.tracks):
        if (wanted is not None and track.name not in wanted) or args.collect_only:
            continue
        started = time.time()
        if track.continues:
            continue_runs(project, track.continues, track, track.seeds or seeds)
        command = ["compare", "-p", str(project), "--name", track.name, "--methods", ",".join(track.methods),
                   "--seeds", str(track.seeds or seeds), "--rounds", str(track.rounds), "--seed-method", track.seed_method,
                   "--seed-unit", track.seed_unit, "--seed-budget", track.seed_budget, "--budget", track.budget,
                   "--workers", str(args.workers), "--device", args.device]
        overrides = {**profile.train, **track.train}
        command += [part for key, value in overrides.items() for part in (f"--{key}", str(value))]
        if profile.reference_seeds is not None:
            command += ["--reference-seeds", str(profile.reference_seeds)]
        if index == 0 and profile.convergence_check:
            command.append("--convergence-check")
        _pcal(command, out / f"{track.name}.log")
        timings[track.name] = round(time.time() - started, 1)
    record = collect(profile, project, seeds)
    record.update(machine=machine(), command=sys.argv, commit=_git("rev-parse", "HEAD"),
                  dirty=bool(_git("status", "--porcelain", "--untracked-files=no")),
                  wall_seconds=None if args.collect_only else round(time.time() - began, 1), track_seconds=timings, workers=args.workers)
    results.parent.mkdir(parents=True, exist_ok=True)
    temporary = results.with_name(results.name + ".tmp")
    temporary.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(temporary, results)
    print(f"wrote {results}" + ("" if record["wall_seconds"] is None else f" ({record['wall_seconds']:.0f} s)"))


def continue_runs(project: Path, base: str, track: Track, seeds: int) -> None:
    """Copy the finished runs of track ``base`` (and its shared round 0s) into ``track``'s comparison,
    once, so that ``pcal compare`` adds ``track.rounds`` rounds to each: a run with its rounds but no
    ``run.json`` and no round plan gets new rounds. A copy is staged and renamed into place."""
    import shutil

    for seed in range(seeds):
        for method in ("_seed", *track.methods):
            source, target = project / base / method / f"s{seed}", project / track.name / method / f"s{seed}"
            if target.exists():
                continue
            if not (source / ("rounds" if method == "_seed" else "run.json")).exists():
                raise SystemExit(f"al_benchmark: track {track.name} continues {base}: run {base} first "
                                 f"({source} is not finished)")
            staging = target.with_name(f".{target.name}.copy")
            shutil.rmtree(staging, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, staging, symlinks=True)  # scenes and cache stay links to the project's
            for name in ("run.json", "round_plan.json"):  # finished marks: the rounds are to go on
                (staging / name).unlink(missing_ok=True)
            os.replace(staging, target)


def only_methods(profile: Profile, methods: list[str]) -> Profile:
    """The profile with each track cut to ``methods`` (tracks left with none are dropped)."""
    tracks = [replace(t, methods=tuple(m for m in t.methods if m in methods)) for t in profile.tracks]
    return replace(profile, tracks=tuple(t for t in tracks if t.methods))


def _prepare(profile: Profile, out: Path, project: Path, data: Path) -> None:
    command = ["prepare", *[part.format(data=data) for part in profile.prepare], "-p", str(project)]
    if profile.split_file:
        (out / "split.yaml").write_text(profile.split_file)
        command += ["--split-file", str(out / "split.yaml")]
    if profile.classes_file:
        (out / "classes.yaml").write_text(profile.classes_file)
        command += ["--classes", str(out / "classes.yaml")]
    _pcal(command, out / "prepare.log")


def _pcal(arguments: list[str], log: Path) -> None:
    """Run ``pcal ARGUMENTS`` with its output in ``log``; stop the benchmark if it fails."""
    print("pcal " + " ".join(arguments), flush=True)
    with log.open("a") as handle:
        done = subprocess.run([sys.executable, "-m", "pcal_cli", *arguments], stdout=handle, stderr=subprocess.STDOUT,
                              env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    if done.returncode:
        raise SystemExit(f"al_benchmark: pcal {arguments[0]} failed (exit {done.returncode}); see {log}")


def collect(profile: Profile, project_root: Path, seeds: int) -> dict[str, Any]:
    """Everything the results JSON holds about the runs, read from the project's files."""
    from pcal_cli.evaluation.report import collect_run
    from pcal_cli.project import Project
    from pcal_cli.rounds import read_json
    from pcal_cli.steps.compare import CONVERGENCE_FILE, REFERENCES_DIR, SETTINGS_FILE, run_folder

    project = Project.open(project_root)
    config = project.config
    tracks, references = {}, {}
    for track in profile.tracks:
        folder = project.root / track.name
        if not (folder / SETTINGS_FILE).is_file():
            continue
        settings = read_json(folder / SETTINGS_FILE, "compare settings")
        methods = {}
        for method in track.methods:
            runs = {}
            for seed in range(track.seeds or seeds):
                path = run_folder(project, method, seed, track.name)
                if not (path / "run.json").is_file():
                    continue
                report = collect_run(path)
                runs[str(seed)] = [_round(row) for row in report.rows]
                if report.full is not None and _own_reference(project, settings, seed):
                    references[str(seed)] = {"miou": report.full.miou, "iou": report.full.iou}
            methods[method] = runs
        entry = {"settings": settings, "note": track.note, "methods": methods, "continues": track.continues}
        if (folder / CONVERGENCE_FILE).is_file():
            entry["convergence"] = read_json(folder / CONVERGENCE_FILE, "convergence check")
        tracks[track.name] = entry
    convergence = next((t["convergence"] for t in tracks.values() if "convergence" in t), None)
    values = [r["miou"] for r in references.values() if r["miou"] is not None]
    return {
        "profile": profile.name,
        "description": profile.description,
        "metric": "mIoU over the classes present in the test ground truth (one confusion matrix over the split)",
        "project": {"dataset": config.dataset, "classes": config.classes, "voxel_size": config.voxel_size,
                    "training": config.training, "train_points": project.point_count("train"),
                    "test_points": project.point_count("test") if project.scenes("test") else 0,
                    "scenes": {split: len(names) for split, names in config.splits.items()},
                    "regions": config.regions.kind},
        "reference": {"seeds": references, "miou_mean": statistics.mean(values) if values else None,
                      "miou_sd": statistics.stdev(values) if len(values) > 1 else None,
                      "convergence": convergence, "folder": REFERENCES_DIR},
        "tracks": tracks,
        "not_possible": NOT_POSSIBLE,
    }


def _own_reference(project, settings: dict[str, Any], seed: int) -> bool:
    """Whether ``seed`` trained its own reference (with ``--reference-seeds`` later seeds reuse seed
    0's, which must not count as another seed of the reference's spread)."""
    from pcal_cli.steps.compare import FULL_DIR, METRICS_FILE, reference_folder, reference_options
    from pcal_cli.training.supervised import TrainOptions

    train = TrainOptions(**{k: v for k, v in settings["train"].items() if k in TrainOptions.__dataclass_fields__})
    steps = settings.get("full_steps") or 2 * train.steps
    return (reference_folder(project, reference_options(train, steps, seed)) / FULL_DIR / METRICS_FILE).is_file()


def _round(row) -> dict[str, Any]:
    evaluation = row.evaluation
    return {"round": row.round, "labelled_points": row.labelled_points,
            "labelled_percent": row.labelled_percent, "points_added": row.points_added,
            "units_added": row.units_added, "unit": row.unit, "void_added": row.void_added,
            "void_share": (row.void_added / row.points_added) if row.void_added is not None and row.points_added
            else None,
            "miou": None if evaluation is None else evaluation.miou,
            "iou": None if evaluation is None else evaluation.iou}


def machine() -> dict[str, Any]:
    import torch

    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "unknown")
    except OSError:  # no /proc (not Linux)
        model = "unknown"
    return {"cpu": model, "cpus_usable": len(_cpus()), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _cpus() -> set[int]:
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def _git(*arguments: str) -> str:
    try:
        return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


# -- docs -----------------------------------------------------------------------------------------


def render_docs(paths: list[Path], docs: Path = DOCS) -> None:
    """Replace each profile's section of docs/benchmarks.md (between its markers) by its tables."""
    text = docs.read_text()
    for path in paths:
        record = json.loads(path.read_text())
        name = record["profile"]
        start, end = MARK.format(name, "start"), MARK.format(name, "end")
        block = f"{start}\n{render(record)}\n{end}"
        if start in text and end in text:
            text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    docs.write_text(text)
    print(f"rendered {len(paths)} profile(s) into {docs}")


def render(record: dict[str, Any]) -> str:
    """Markdown tables of one results JSON."""
    lines = [f"### Profile `{record['profile']}`: {record['description']}", ""]
    m = record["machine"]
    lines.append(f"Machine: {m['cpu']}, {m['cpus_usable']} usable CPUs, torch {m['torch']}"
                 + (f", {m['cuda']}" if m.get("cuda") else ", no GPU")
                 + f"; {record.get('workers', 1)} trainings side by side"
                 + ("" if record.get("wall_seconds") is None else f"; {record['wall_seconds'] / 3600:.1f} h wall")
                 + ". "
                 f"Commit `{record['commit'][:10]}`{' (with uncommitted changes)' if record.get('dirty') else ''}. "
                 f"Command: `{' '.join(Path(record['command'][0]).name if i == 0 else a for i, a in enumerate(record['command']))}`.")
    project = record["project"]
    scenes = ", ".join(f"{n} {split}" for split, n in project["scenes"].items())
    lines += ["", f"Project: {project['dataset']}, {scenes} scenes, {project['train_points']:,} training points, "
              f"{project['test_points']:,} test points, voxel {project['voxel_size']} m, {project['regions']} regions, "
              f"training profile `{project['training'].get('profile')}`."]
    reference = record["reference"]
    lines += ["", f"Metric: {record['metric']}."]
    if reference["miou_mean"] is not None:
        sd = "" if reference["miou_sd"] is None else f" ± {100 * reference['miou_sd']:.1f}"
        count = len(reference["seeds"])
        lines.append(f"Full supervision (all training labels): **{100 * reference['miou_mean']:.1f}{sd}** over "
                     + ("1 seed (seed 0; every seed's ratio is to it)." if count == 1 else f"{count} seeds."))
    check = reference.get("convergence")
    if check:
        verdict = "converged (under 1 point)" if abs(check["change"]) < 0.01 else "**not converged** (1 point or more)"
        lines.append(f"Convergence check, seed 0: {100 * check['miou']:.1f} at {check['steps']} steps, "
                     f"{100 * check['miou_doubled']:.1f} at {check['steps_doubled']} steps "
                     f"({100 * check['change']:+.1f} points): {verdict}.")
    for name, track in record["tracks"].items():
        lines += ["", *render_track(name, track, reference["miou_mean"])]
    return "\n".join(lines)


def render_track(name: str, track: dict[str, Any], full: float | None) -> list[str]:
    settings = track["settings"]
    methods = {m: runs for m, runs in track["methods"].items() if runs}
    if not methods:
        return [f"#### Track `{name}`: no finished run yet"]
    train = settings["train"]
    start = (f"Rounds 0-{_last_copied(methods, settings['rounds'])}: the runs of track `{track['continues']}` (above); then"
             if track.get("continues") else
             f"Seed: {settings['seed_method']} {settings['seed_unit']}s, {settings['seed_budget']} of the training "
             f"points; then")
    lines = [f"#### Track `{name}`" + (f": {track['note']}" if track.get("note") else ""), "",
             f"{start} {settings['rounds']} round{'s' if settings['rounds'] != 1 else ''} buying "
             f"{settings['budget']} of the points (round by round, "
             f"the same for every method); {settings['seeds']} seed{'s' if settings['seeds'] != 1 else ''}; "
             f"{train['backbone']} cr {train['cr']}, lr "
             f"{train['lr']}, batch {train['batch_size']}; "
             + ("" if track.get("continues") else f"round 0 {train['steps']} steps, ")
             + ("these rounds " if track.get("continues") else "later rounds ")
             + f"{train.get('finetune_steps') or train['steps']} steps (fine-tune: {settings['warm_start']}); reference "
             f"{settings.get('full_steps')} steps. mIoU % mean ± sd over seeds (ratio to full supervision); "
             "≈ marks a mean not ahead of random's by more than random's sd.", ""]
    baseline = next((m for m in ("random", "hpal_random") if m in methods), None)
    stats = {m: _per_round(runs) for m, runs in methods.items()}
    rounds = sorted({r for s in stats.values() for r in s})
    lines.append("| round | % labelled | " + " | ".join(f"`{m}`" for m in methods) + " |")
    lines.append("|---|---|" + "---|" * len(methods))
    for r in rounds:
        share = statistics.mean(s[r]["labelled"] for s in stats.values() if r in s)
        cells = []
        for m in methods:
            point = stats[m].get(r)
            if point is None:
                cells.append("")
                continue
            ratio = f" ({point['mean'] / full:.2f}×)" if full else ""
            mark = ""
            base = stats[baseline].get(r) if baseline and m != baseline else None
            if r > 0 and base is not None and base["n"] > 1 and not point["mean"] - base["mean"] > base["sd"]:
                mark = " ≈"
            spread = f" ± {100 * point['sd']:.1f}" if point["n"] > 1 else ""
            cells.append(f"{100 * point['mean']:.1f}{spread}{ratio}{mark}")
        lines.append(f"| {r} | {share:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "Points bought per round (mean over seeds) and the void share of them:", "",
              "| round | " + " | ".join(f"`{m}`" for m in methods) + " |", "|---|" + "---|" * len(methods)]
    for r in rounds[1:]:
        cells = []
        for m in methods:
            point = stats[m].get(r)
            if point is None or point["added"] is None:
                cells.append("")
                continue
            void = "" if point["void"] is None else f" ({100 * point['void']:.1f}% void)"
            cells.append(f"{point['added']:,.0f}{void}")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    if baseline is not None and len(methods) > 1:
        lines += ["", *paired_lines(methods, baseline)]
    return lines


def _last_copied(methods: dict[str, dict[str, list[dict[str, Any]]]], added: int) -> int:
    """The last round a continuing track copied: the rounds before the ``added`` ones."""
    last = max((row["round"] for runs in methods.values() for rows in runs.values() for row in rows), default=0)
    return max(0, last - added)


def paired_lines(methods: dict[str, dict[str, list[dict[str, Any]]]], baseline: str) -> list[str]:
    """Each method against the baseline on the same seed (same round 0) at the last round both
    reached: the per-seed differences in mIoU points, which the spread over seeds hides."""
    lines = [f"Paired with `{baseline}` (same seed, so the same round 0), last round, mIoU points:", ""]
    for method, runs in methods.items():
        if method == baseline:
            continue
        diffs = []
        for seed, rows in sorted(runs.items()):
            base = {row["round"]: row["miou"] for row in methods[baseline].get(seed, []) if row["miou"] is not None}
            mine = {row["round"]: row["miou"] for row in rows if row["miou"] is not None}
            common = sorted(set(base) & set(mine))
            if common:
                diffs.append((seed, common[-1], 100 * (mine[common[-1]] - base[common[-1]])))
        if not diffs:
            continue
        ahead = sum(d > 0 for _, _, d in diffs)
        each = ", ".join(f"s{seed} {d:+.1f}" for seed, _, d in diffs)
        lines.append(f"- `{method}`: {statistics.mean(d for _, _, d in diffs):+.1f} on average, ahead on {ahead} of "
                     f"{len(diffs)} seeds ({each}; round {diffs[0][1]})")
    return lines


def _per_round(runs: dict[str, list[dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    by_round: dict[int, list[dict[str, Any]]] = {}
    for rows in runs.values():
        for row in rows:
            if row["miou"] is not None:
                by_round.setdefault(row["round"], []).append(row)
    out = {}
    for r, rows in by_round.items():
        values = [row["miou"] for row in rows]
        added = [row["points_added"] for row in rows if row["points_added"] is not None]
        voids = [(row["void_added"], row["points_added"]) for row in rows
                 if row["void_added"] is not None and row["points_added"]]
        out[r] = {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                  "n": len(values), "labelled": statistics.mean(row["labelled_percent"] for row in rows),
                  "added": statistics.mean(added) if added else None,
                  "void": sum(v for v, _ in voids) / sum(n for _, n in voids) if voids else None}
    return out


if __name__ == "__main__":
    main()
