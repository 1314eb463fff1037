"""``pcal compare``: methods x seeds on one project, with the same start per seed and a reference.

Layout, under the project (each run folder is a project of its own whose ``scenes`` and ``cache``
are links to the parent's, so no PLY is copied)::

    PROJ/compare/compare.json          the settings (a rerun must use the same ones)
    PROJ/compare/_seed/s<k>/           round 0 of seed k, drawn once and copied into every run
    PROJ/compare/_full/s<k>/           the full-supervision reference of seed k (same recipe)
    PROJ/compare/<method>/s<k>/        one run: rounds, ledger, full/metrics.json (the reference's)

Every run starts from seed k's round 0 (unless ``seed_method`` is ``method``: then each method
draws its preset's own seed), trains with the same recipe and schedule, and is resumable: a
finished run (``run.json``) is skipped and an interrupted one continues where it stopped (its
``round_plan.json`` fixes the round it runs to).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pcal_cli.atomic import TMP_SUFFIX, fsync_dir, write_json, write_text
from pcal_cli.errors import PcalError
from pcal_cli.evaluation.evaluate import METRICS_FILE, evaluate
from pcal_cli.methods import get_method
from pcal_cli.project import CONFIG_NAME, Project
from pcal_cli.rounds import FULL_DIR, read_json
from pcal_cli.steps.properties import CACHE_DIR
from pcal_cli.steps.round import PLAN_FILE, evaluation_split, run_rounds
from pcal_cli.steps.seed import seed_round
from pcal_cli.training.supervised import TrainOptions, train

COMPARE_DIR = "compare"
SETTINGS_FILE = "compare.json"
RUN_FILE = "run.json"

Say = Callable[[str], None]


@dataclass
class CompareSettings:
    methods: list[str]
    seeds: int = 3
    rounds: int = 5
    budget: str | None = None  # per round; None: each method's own
    seed_method: str = "random"  # random | seedal | method (each method's own seed)
    seed_unit: str = "region"
    seed_budget: str = "3%"
    full_reference: bool = True
    train: TrainOptions = field(default_factory=TrainOptions)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["train"].pop("seed", None)  # the seed of each run is its index
        data["train"].pop("device", None)  # results do not depend on where they ran
        return json.loads(json.dumps(data))


def compare_dir(project: Project) -> Path:
    return project.root / COMPARE_DIR


def run_folder(project: Project, method: str, seed: int) -> Path:
    return compare_dir(project) / method / f"s{seed}"


def run_folders(folder: Path) -> list[Path]:
    """The method runs of a compare folder (not the shared seed and reference folders)."""
    return sorted(p.parent for p in folder.glob(f"*/s*/{CONFIG_NAME}") if not p.parent.parent.name.startswith("_"))


def compare(project: Project, settings: CompareSettings, *, say: Say = lambda text: None,
            on_run: Callable[[int, int, str], None] | None = None,
            on_step: Callable[[int, int, float], None] | None = None) -> list[Path]:
    """Run every (method, seed) pair that is not finished yet; return the run folders."""
    _check(project, settings)
    folder = compare_dir(project)
    folder.mkdir(exist_ok=True)
    _record_settings(folder, settings)
    (project.root / CACHE_DIR).mkdir(exist_ok=True)
    pairs = [(method, seed) for seed in range(settings.seeds) for method in settings.methods]
    total = len(pairs) + settings.seeds * settings.full_reference
    done = 0
    for seed in range(settings.seeds):
        options = replace(settings.train, seed=seed)
        if settings.seed_method != "method":
            _shared_seed(project, settings, seed)
        if settings.full_reference:
            _full_reference(project, options, seed, say, on_step)
            done += 1
            if on_run is not None:
                on_run(done, total, f"full reference s{seed}")
    folders = []
    for method, seed in pairs:
        path = run_folder(project, method, seed)
        folders.append(path)
        if not (path / RUN_FILE).is_file():
            say(f"{method} s{seed}: running")
            run = _make_run(project, path)
            if settings.seed_method != "method" and not run.rounds():
                _copy_seed(compare_dir(project) / "_seed" / f"s{seed}", path)
            plan = path / PLAN_FILE
            finished = plan.is_file() and read_json(plan, "round plan").get("done")
            if not finished:  # a plan left unfinished by an interruption is continued, not restarted
                run_rounds(run, method, rounds=settings.rounds, budget=settings.budget,
                           options=replace(settings.train, seed=seed), say=lambda text, m=method, s=seed:
                           say(f"{m} s{s}: {text}"), on_step=on_step)
            if settings.full_reference:
                _share_reference(project, path, seed)
            write_json(path / RUN_FILE, {"method": method, "seed": seed, "rounds": settings.rounds})
        done += 1
        if on_run is not None:
            on_run(done, total, f"{method} s{seed}")
    return folders


def _check(project: Project, settings: CompareSettings) -> None:
    if not settings.methods:
        raise PcalError("--methods: name at least one method")
    for method in settings.methods:
        get_method(method)
    if len(set(settings.methods)) != len(settings.methods):
        raise PcalError("--methods lists a method twice")
    if settings.seeds < 1 or settings.rounds < 1:
        raise PcalError("--seeds and --rounds must be at least 1")
    if settings.seed_method not in ("random", "seedal", "method"):
        raise PcalError(f"--seed-method must be random, seedal or method, got '{settings.seed_method}'")
    if evaluation_split(project) is None:
        raise PcalError(f"{project.root}: no test or val split to compare the methods on")
    from pcal_cli.selection.budget import parse_budget
    from pcal_cli.training.supervised import check_options, resolve_device
    from pcal_cli.units import check_unit

    resolve_device(settings.train.device)
    check_options(settings.train)
    check_unit(settings.seed_unit)
    parse_budget(settings.seed_budget)
    if settings.budget is not None:
        parse_budget(settings.budget)


def _record_settings(folder: Path, settings: CompareSettings) -> None:
    path = folder / SETTINGS_FILE
    wanted = settings.to_dict()
    if path.is_file():
        existing = read_json(path, "compare settings")
        keys = [k for k in wanted if k not in ("methods", "seeds") and existing.get(k) != wanted[k]]
        if keys:
            raise PcalError(f"{path}: this comparison was started with other {', '.join(keys)}; use the same "
                            "settings (more methods or seeds may be added), or another project")
        wanted["methods"] = list(dict.fromkeys(existing.get("methods", []) + wanted["methods"]))
        wanted["seeds"] = max(int(existing.get("seeds", 0)), wanted["seeds"])
    write_json(path, wanted)


def _make_run(project: Project, path: Path) -> Project:
    """A run project linked to the parent's scenes and cache (created atomically once)."""
    if not (path / CONFIG_NAME).is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        shutil.copy2(project.config_path, staging / CONFIG_NAME)
        for name in ("scenes", CACHE_DIR):
            os.symlink(os.path.relpath(project.root / name, path), staging / name)
        write_text(staging / "ledger.jsonl", "")
        shutil.rmtree(path, ignore_errors=True)  # a folder left without its config is incomplete
        os.replace(staging, path)
        fsync_dir(path.parent)
    return Project.open(path)


def _shared_seed(project: Project, settings: CompareSettings, seed: int) -> None:
    run = _make_run(project, compare_dir(project) / "_seed" / f"s{seed}")
    unit = None if settings.seed_method == "seedal" else settings.seed_unit
    seed_round(run, settings.seed_method, unit, settings.seed_budget, seed=seed,
               seedal={"device": settings.train.device} if settings.seed_method == "seedal" else None)


def _copy_seed(source: Path, target: Path) -> None:
    """Round 0 and the ledger of the shared seed into a fresh run (round folder renamed into place)."""
    staging = target / "rounds" / f".r000.{os.getpid()}{TMP_SUFFIX}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source / "rounds" / "r000", staging)
    write_text(target / "ledger.jsonl", (source / "ledger.jsonl").read_text())
    os.replace(staging, target / "rounds" / "r000")
    fsync_dir(target / "rounds")


def _full_reference(project: Project, options: TrainOptions, seed: int, say: Say, on_step) -> None:
    run = _make_run(project, compare_dir(project) / "_full" / f"s{seed}")
    split = evaluation_split(project)
    metrics = run.root / FULL_DIR / METRICS_FILE
    if metrics.is_file() and split in read_json(metrics, "metrics"):
        return
    train(run, None, replace(options, semi=None, reg=None, warm_start=False), resume=True, on_step=on_step)
    result = evaluate(run, None, split, device=options.device)
    say(f"full reference s{seed}: mIoU {100 * (result['miou'] or 0):.1f} on {split}")


def _share_reference(project: Project, path: Path, seed: int) -> None:
    source = compare_dir(project) / "_full" / f"s{seed}" / FULL_DIR / METRICS_FILE
    if source.is_file():
        (path / FULL_DIR).mkdir(exist_ok=True)
        write_text(path / FULL_DIR / METRICS_FILE, source.read_text())
