"""``pcal compare``: methods x seeds on one project, with the same start per seed and a reference.

Layout, under the project (each run folder is a project of its own whose ``scenes`` and ``cache``
are links to the parent's, so no PLY is copied)::

    PROJ/compare/compare.json          the settings (a rerun must use the same ones)
    PROJ/compare/_seed/s<k>/           round 0 of seed k: drawn, trained and evaluated once, then
                                       copied (labels, model, metrics) into every run of seed k
    PROJ/compare/<method>/s<k>/        one run: rounds, ledger, full/metrics.json (the reference's)
    PROJ/references/<key>/s<k>/        the full-supervision reference of seed k, keyed by its
                                       training settings, so every comparison of the project that
                                       trains the same reference (``full_steps``) reuses it

``compare`` is the folder's default name; ``name`` gives a project several comparisons (e.g. one
per labelling unit) that share the references.

Fair by construction: every run of seed k starts from the same round 0 and the same round-0
network (unless ``seed_method`` is ``method``: then each method draws and trains its preset's own
seed), spends the same per-round budget in points (one ``budget`` for every method), follows one
warm-start policy (by default every round fine-tunes the previous round's network, as the papers
do, whatever the method's preset says) and the same training schedule; the reference is trained
once per seed for ``full_steps`` and shared. Runs are resumable: a finished run (``run.json``) is
skipped and an interrupted one continues where it stopped (its ``round_plan.json`` fixes the
round it runs to). With ``workers`` > 1 the trainings of different seeds and methods run in that
many processes side by side (a run starts as soon as its seed's round 0 is trained, the references
at once), each with an equal share of the CPU threads; the files they write are
those of one process (each run is seeded by itself), except for rounding differences of the thread
count, which can change weights in the last bits.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
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
from pcal_cli.steps.engine import evaluation_split, train_and_evaluate
from pcal_cli.steps.round import PLAN_FILE, run_rounds
from pcal_cli.steps.seed import SEEDS, seed_round, seed_unit
from pcal_cli.training.supervised import MODEL_FILE, TrainOptions, train
from pcal_cli.catalogue import DEFAULT_BUDGET
from pcal_cli.layout import COMPARE_DIR, CONVERGENCE_FILE, REFERENCES_DIR, RUN_FILE, SETTINGS_FILE


Say = Callable[[str], None]


@dataclass
class CompareSettings:
    methods: list[str]
    seeds: int = 3
    rounds: int = 5
    budget: str = DEFAULT_BUDGET  # per round, the same for every method ("1%" or "0.5%,1%,2%" round by round)
    seed_method: str = "random"  # random | seedal | method (each method's own seed)
    seed_unit: str = "region"
    seed_budget: str = "3%"
    full_reference: bool = True
    full_steps: int | None = None  # steps of the full-supervision reference (None: twice train.steps)
    warm_start: bool = True  # every method fine-tunes the previous round's network (False: from scratch)
    train: TrainOptions = field(default_factory=TrainOptions)
    name: str = COMPARE_DIR  # the comparison's folder under the project
    workers: int = 1  # processes training side by side (not part of the results)
    convergence_check: bool = False  # also train seed 0's reference with twice full_steps
    reference_seeds: int | None = None  # references trained (seeds 0..n-1; None: one per seed); later seeds use seed 0's

    @property
    def reference_steps(self) -> int:
        return self.full_steps if self.full_steps is not None else 2 * self.train.steps

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["train"].pop("seed", None)  # the seed of each run is its index
        data["train"].pop("device", None)  # results do not depend on where they ran
        data.pop("workers", None)
        data.pop("name", None)
        data.pop("convergence_check", None)
        data.pop("reference_seeds", None)
        return json.loads(json.dumps(data))


def compare_dir(project: Project, name: str = COMPARE_DIR) -> Path:
    return project.root / name


def run_folder(project: Project, method: str, seed: int, name: str = COMPARE_DIR) -> Path:
    return compare_dir(project, name) / method / f"s{seed}"


def run_folders(folder: Path) -> list[Path]:
    """The method runs of a compare folder (not the shared seed and reference folders)."""
    return sorted(p.parent for p in folder.glob(f"*/s*/{CONFIG_NAME}") if not p.parent.parent.name.startswith("_"))


def reference_options(options: TrainOptions, steps: int, seed: int) -> TrainOptions:
    """The full-supervision reference's training options: plain supervision, from scratch."""
    return replace(options, steps=steps, seed=seed, semi=None, reg=None, warm_start=False, finetune_steps=None,
                   init=None, recipe=None, dropout=None)


#: The settings a full-supervision reference depends on (plain supervision from scratch).
REFERENCE_KEYS = ("backbone", "cr", "steps", "epochs", "lr", "optimizer", "weight_decay", "batch_size", "max_points",
                  "precision", "dropout")


def reference_folder(project: Project, options: TrainOptions) -> Path:
    """Where the reference trained with ``options`` lives: keyed by the settings plain supervised
    training depends on (:data:`REFERENCE_KEYS`), so recipe options of the methods never split it."""
    settings = {key: getattr(options, key) for key in REFERENCE_KEYS}
    settings["dropout"] = settings["dropout"] or 0.0
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return project.root / REFERENCES_DIR / f"{options.backbone}-{options.steps}steps-{key}" / f"s{options.seed}"


def full_reference(project: Project, options: TrainOptions, *, say: Say = lambda text: None,
                   on_step=None) -> dict[str, Any]:
    """Train (once: a rerun reuses it) and evaluate the full-supervision reference of ``options``;
    return its metrics on the evaluation split."""
    run = _make_run(project, reference_folder(project, options))
    split = evaluation_split(project)
    metrics = run.root / FULL_DIR / METRICS_FILE
    if metrics.is_file() and split in read_json(metrics, "metrics"):
        return read_json(metrics, "metrics")[split]
    train(run, None, options, resume=True, on_step=on_step)
    result = evaluate(run, None, split, device=options.device)
    say(f"full reference s{options.seed} ({options.steps} steps): mIoU {100 * (result['miou'] or 0):.1f} on {split}")
    return result


def compare(project: Project, settings: CompareSettings, *, say: Say = lambda text: None,
            on_run: Callable[[int, int, str], None] | None = None,
            on_step: Callable[[int, int, float], None] | None = None) -> list[Path]:
    """Run every (method, seed) pair that is not finished yet; return the run folders."""
    _check(project, settings)
    folder = compare_dir(project, settings.name)
    folder.mkdir(exist_ok=True)
    _record_settings(folder, settings)
    (project.root / CACHE_DIR).mkdir(exist_ok=True)
    shared = settings.seed_method != "method"
    for seed in range(settings.seeds):
        if shared:
            _shared_seed(project, settings, seed)  # cheap and sequential: the draws never race
    first: list[tuple[str, str | None, int]] = [("round0", None, seed) for seed in range(settings.seeds) if shared]
    references = [("reference", None, seed) for seed in range(_reference_seeds(settings)) if settings.full_reference]
    if settings.full_reference and settings.convergence_check:
        references.append(("doubled", None, 0))
    runs = [("run", method, seed) for seed in range(settings.seeds) for method in settings.methods]
    total = len(first) + len(references) + len(runs)
    done = 0

    def finished(job: tuple[str, str | None, int]) -> None:
        nonlocal done
        done += 1
        if on_run is not None:
            kind, method, seed = job
            on_run(done, total, {"round0": f"round 0 s{seed}", "reference": f"full reference s{seed}",
                                 "doubled": "convergence check"}.get(kind, f"{method} s{seed}"))

    # every run of a seed starts from its round 0; the references train beside them
    jobs = first + references + runs
    if settings.workers > 1 and len(jobs) > 1:
        _in_processes(project, settings, jobs, say, finished)
    else:
        for job in jobs:
            _job(project, settings, job, say, on_step)
            finished(job)
    if settings.full_reference:
        for _, method, seed in runs:
            _share_reference(project, settings, method, seed)
    if settings.full_reference and settings.convergence_check:
        check = convergence(project, settings)
        say(f"convergence check: full supervision {100 * check['miou']:.1f} at {check['steps']} steps, "
            f"{100 * check['miou_doubled']:.1f} at {check['steps_doubled']} ({100 * check['change']:+.1f} points)")
    return [run_folder(project, method, seed, settings.name) for _, method, seed in runs]


def convergence(project: Project, settings: CompareSettings) -> dict[str, Any]:
    """Seed 0's reference at ``full_steps`` and at twice as many: the change tells whether the
    schedule converged (written to ``<name>/convergence.json``)."""
    options = replace(settings.train, seed=0)
    once = full_reference(project, reference_options(options, settings.reference_steps, 0))
    twice = full_reference(project, reference_options(options, 2 * settings.reference_steps, 0))
    record = {"seed": 0, "steps": settings.reference_steps, "miou": once["miou"],
              "steps_doubled": 2 * settings.reference_steps, "miou_doubled": twice["miou"],
              "change": twice["miou"] - once["miou"], "rule": once.get("miou_rule")}
    write_json(compare_dir(project, settings.name) / CONVERGENCE_FILE, record)
    return record


def _job(project: Project, settings: CompareSettings, job: tuple[str, str | None, int], say: Say,
         on_step=None) -> None:
    """One unit of a comparison: a seed's round 0, a seed's reference, or one (method, seed) run."""
    kind, method, seed = job
    options = replace(settings.train, seed=seed)
    if kind == "round0":
        _shared_round0(project, settings, options, seed, say, on_step)
    elif kind == "reference":
        full_reference(project, reference_options(options, settings.reference_steps, seed), say=say, on_step=on_step)
    elif kind == "doubled":
        full_reference(project, reference_options(options, 2 * settings.reference_steps, seed), say=say,
                       on_step=on_step)
    else:
        _method_run(project, settings, method, seed, say, on_step)


def _job_in_process(root: str, settings: CompareSettings, job: tuple[str, str | None, int],
                    threads: int) -> tuple[list[str], list[str]]:
    """:func:`_job` in a worker process, with ``threads`` torch threads; returns what it said and
    the warnings it raised (the parent shows both, as one line each)."""
    import torch

    torch.set_num_threads(threads)
    said: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _job(Project.open(root), settings, job, said.append)
    return said, list(dict.fromkeys(str(w.message) for w in caught))


def _in_processes(project: Project, settings: CompareSettings, jobs: list, say: Say, finished) -> None:
    import multiprocessing

    threads = max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
                  // settings.workers)
    context = multiprocessing.get_context("spawn")
    waiting = list(jobs)
    unfinished = {seed for kind, _, seed in jobs if kind == "round0"}  # the seeds whose round 0 runs
    with ProcessPoolExecutor(max_workers=settings.workers, mp_context=context) as pool:
        futures: dict = {}
        while waiting or futures:
            for job in ready_jobs(waiting, unfinished):
                waiting.remove(job)
                futures[pool.submit(_job_in_process, str(project.root), settings, job, threads)] = job
            future = next(as_completed(futures))
            job = futures.pop(future)
            said, raised = future.result()  # a worker's PcalError is raised here, in the parent
            for text in said:
                say(text)
            for message in raised:
                warnings.warn(message, stacklevel=2)
            if job[0] == "round0":
                unfinished.discard(job[2])
            finished(job)


def ready_jobs(waiting: list[tuple[str, str | None, int]], unfinished: set[int]) -> list[tuple[str, str | None, int]]:
    """The jobs of ``waiting`` that may start now, in their order: a run waits until its seed's
    shared round 0 is trained (``unfinished``: the seeds whose round 0 is not), round 0s and
    references start at once. So a worker trains a reference or another seed's runs instead of
    idling while the last round 0 trains."""
    return [job for job in waiting if job[0] != "run" or job[2] not in unfinished]


def _method_run(project: Project, settings: CompareSettings, method: str, seed: int, say: Say, on_step) -> None:
    path = run_folder(project, method, seed, settings.name)
    if (path / RUN_FILE).is_file():
        return
    say(f"{method} s{seed}: running")
    run = _make_run(project, path)
    if settings.seed_method != "method" and not run.rounds():
        _copy_seed(compare_dir(project, settings.name) / "_seed" / f"s{seed}", path)
    plan = path / PLAN_FILE
    complete = plan.is_file() and read_json(plan, "round plan").get("done")
    if not complete:  # a plan left unfinished by an interruption is continued, not restarted
        run_rounds(run, method, rounds=settings.rounds, budget=settings.budget,
                   options=replace(settings.train, seed=seed, warm_start=settings.warm_start),
                   say=lambda text: say(f"{method} s{seed}: {text}"), on_step=on_step)
    write_json(path / RUN_FILE, {"method": method, "seed": seed, "rounds": settings.rounds})


def _reference_seeds(settings: CompareSettings) -> int:
    return settings.seeds if settings.reference_seeds is None else min(settings.reference_seeds, settings.seeds)


def _share_reference(project: Project, settings: CompareSettings, method: str, seed: int) -> None:
    """A run's ``full/metrics.json``: its seed's reference (seed 0's beyond ``reference_seeds``)."""
    own = seed if seed < _reference_seeds(settings) else 0
    source = reference_folder(project, reference_options(settings.train, settings.reference_steps, own))
    source = source / FULL_DIR / METRICS_FILE
    target = run_folder(project, method, seed, settings.name) / FULL_DIR / METRICS_FILE
    if source.is_file() and (not target.is_file() or target.read_text() != source.read_text()):
        target.parent.mkdir(exist_ok=True)
        write_text(target, source.read_text())


def _check(project: Project, settings: CompareSettings) -> None:
    if not settings.methods:
        raise PcalError("--methods: name at least one method")
    for method in settings.methods:
        get_method(method)
    if len(set(settings.methods)) != len(settings.methods):
        raise PcalError("--methods lists a method twice")
    if settings.seeds < 1 or settings.rounds < 1:
        raise PcalError("--seeds and --rounds must be at least 1")
    if settings.seed_method != "method" and settings.seed_method not in SEEDS:
        raise PcalError(f"--seed-method must be method (each method's own seed) or one of {', '.join(SEEDS)}, "
                        f"got '{settings.seed_method}'")
    if evaluation_split(project) is None:
        raise PcalError(f"{project.root}: no test or val split to compare the methods on")
    from pcal_cli.selection.budget import parse_budget, parse_schedule
    from pcal_cli.training.supervised import check_options, resolve_device
    from pcal_cli.units import check_unit

    resolve_device(settings.train.device)
    check_options(settings.train)
    check_unit(settings.seed_unit)
    parse_budget(settings.seed_budget)
    if any(b.kind == "per_scene" for b in parse_schedule(settings.budget)):
        raise PcalError("pcal compare counts budgets in points (3% or 20000): units per scene differ in size "
                        "between methods, so the methods would not spend the same points")
    if settings.full_steps is not None and settings.full_steps < 1:
        raise PcalError("--full-steps must be at least 1")
    if settings.workers < 1:
        raise PcalError("--workers must be at least 1")
    if settings.reference_seeds is not None and settings.reference_seeds < 1:
        raise PcalError("--reference-seeds must be at least 1")
    if not settings.name or settings.name.startswith((".", "_")) or "/" in settings.name or \
            settings.name in ("scenes", "rounds", REFERENCES_DIR, FULL_DIR, CACHE_DIR):
        raise PcalError(f"--name '{settings.name}': give a plain folder name for the comparison")


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
    run = _make_run(project, compare_dir(project, settings.name) / "_seed" / f"s{seed}")
    seed_round(run, settings.seed_method, seed_unit(settings.seed_method, settings.seed_unit), settings.seed_budget,
               seed=seed, options={"device": settings.train.device})


def _shared_round0(project: Project, settings: CompareSettings, options: TrainOptions, seed: int, say: Say,
                   on_step) -> None:
    """Train and evaluate seed ``seed``'s round 0 once, with plain supervision, for every method."""
    run = Project.open(compare_dir(project, settings.name) / "_seed" / f"s{seed}")
    metrics = run.round_dir(0) / METRICS_FILE
    if (run.round_dir(0) / MODEL_FILE).is_file() and metrics.is_file() and \
            evaluation_split(run) in read_json(metrics, "metrics"):
        return
    train_and_evaluate(run, 0, replace(options, semi=None, reg=None, warm_start=False),
                       lambda text: say(f"shared s{seed}: {text}"), on_step)


def _copy_seed(source: Path, target: Path) -> None:
    """Round 0 (labels, the trained network and its metrics) and the ledger of the shared seed
    into a fresh run (the round folder is renamed into place)."""
    staging = target / "rounds" / f".r000.{os.getpid()}{TMP_SUFFIX}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source / "rounds" / "r000", staging)
    write_text(target / "ledger.jsonl", (source / "ledger.jsonl").read_text())
    os.replace(staging, target / "rounds" / "r000")
    fsync_dir(target / "rounds")


