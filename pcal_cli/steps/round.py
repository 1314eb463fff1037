"""``pcal round``: train -> evaluate -> score -> select -> label, repeated.

Every step skips what its round already has, so re-running an interrupted ``pcal round`` picks up
where it stopped and ends with the same files as an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from pcal_cli.atomic import write_bytes, write_json
from pcal_cli.errors import PcalError
from pcal_cli.methods import all_methods, get_method
from pcal_cli.plugins import resolve
from pcal_cli.project import Project
from pcal_cli.rounds import labelled_counts, latest_round, read_json, sync_ledger
from pcal_cli.selection import get_selector
from pcal_cli.selection.budget import Budget
from pcal_cli.steps.label import oracle_round
from pcal_cli.steps.score import ScoreSettings, score_round
from pcal_cli.steps.seed import seed_round, seed_unit
from pcal_cli.steps.select import select_round
from pcal_cli.steps.engine import evaluation_split, train_and_evaluate  # noqa: F401 - re-exported
from pcal_cli.training.supervised import MODEL_FILE, TrainOptions
from pcal_cli.units import DEFAULT_CELL
from pcal_cli.layout import PLAN_FILE

Say = Callable[[str], None]


def check_round_settings(project: Project, preset, budget: str, unit: str, cell: float, options: TrainOptions,
                         scorer_options: dict[str, Any], selector_options: dict[str, Any]) -> list[Budget]:
    """Every option of a ``pcal round`` checked before the first file is written; the budget
    schedule parsed (one :class:`Budget` per round, the last repeated)."""
    from pcal_cli.acquisition import get_scorer
    from pcal_cli.geometry.grid import check_size
    from pcal_cli.options import resolve_options
    from pcal_cli.selection.budget import parse_schedule
    from pcal_cli.training.supervised import check_options, resolve_device
    from pcal_cli.units import check_unit

    check_unit(unit)
    if unit == "cell":
        check_size(cell, "--cell")
    schedule = parse_schedule(budget)
    for parsed in schedule:
        if parsed.kind == "per_scene" and preset.selector != "topk":
            raise PcalError(f"a per-scene budget works with top-k selection only, not {preset.selector}")
    resolve_device(options.device)
    resolved = replace(options, semi=options.semi or preset.semi, reg=options.reg or preset.reg,
                       init=None if options.init in all_methods() else options.init,
                       recipe=options.recipe or preset.recipe)
    check_options(resolved)
    if resolved.init is not None and not Path(resolved.init).is_file():
        raise PcalError(f"--init {resolved.init}: no such checkpoint")
    scorer, selector = get_scorer(preset.scorer), get_selector(preset.selector)
    resolve_options(scorer.default_options(project.config.indoor), scorer_options, f"scorer '{scorer.name}'")
    resolve_options(selector.default_options(project.config.indoor), selector_options,
                    f"selector '{selector.name}'")
    return schedule


def adopt_init_model(project: Project, round_index: int, options: TrainOptions, say: Say) -> None:
    """A round with no point labels yet (e.g. scene tags only) takes the ``--init`` network as its
    model, so point-level active learning starts from it (``--method hpal --init wsegpc``)."""
    path = project.round_dir(round_index) / MODEL_FILE
    if options.init is None or path.exists() or sum(labelled_counts(project, round_index).values()):
        return
    write_bytes(path, Path(options.init).read_bytes())
    say(f"round {round_index}: no point labels yet; starts from {options.init}")


def init_checkpoint(project: Project, init: str | None) -> str | None:
    """``--init``: a checkpoint path, or the name of a method whose network rounds may start from
    (its ``init_model`` hook, e.g. ``--init wsegpc``)."""
    methods = all_methods()
    if init is None or init not in methods:
        return init
    hook = methods[init].init_model
    if hook is None:
        raise PcalError(f"--init {init}: method '{init}' trains no network other methods can start from")
    return str(resolve(hook)(project))


def run_rounds(project: Project, method: str, *, rounds: int = 1, budget: str | None = None, unit: str | None = None,
               cell: float = DEFAULT_CELL, options: TrainOptions | None = None, label: bool = True,
               final: bool = True, scorer_options: dict[str, Any] | None = None,
               selector_options: dict[str, Any] | None = None, seed_method: str | None = None,
               seed_budget: str | None = None, say: Say = lambda text: None,
               on_step: Callable[[int, int, float], None] | None = None) -> int:
    """Run ``rounds`` active learning rounds with ``method``; return the latest round number.

    Without round 0 the method's own seed is drawn first (``seed_method`` and ``seed_budget``
    override it). With
    ``final`` the last labelled round is trained and evaluated too, so the learning curve ends on
    the labels the rounds bought. Without ``label`` the loop stops after selecting, for a person
    to label the queries (``pcal label export``). ``budget`` defaults to the method's; a comma
    list (``"0.5%,1%,2%"``) gives the budgets of this call's rounds in turn, the last repeated.
    """
    preset = get_method(method)
    options = options or TrainOptions()
    if options.semi is None:
        options = replace(options, semi=preset.semi)
    if options.reg is None:
        options = replace(options, reg=preset.reg)
    if options.warm_start is None:
        options = replace(options, warm_start=preset.warm_start)
    if options.dropout is None:
        options = replace(options, dropout=preset.dropout)
    indoor = project.config.indoor
    budget = budget or preset.round_budget(indoor)
    schedule = check_round_settings(project, preset, budget, unit or preset.unit, cell, options,
                                    {**preset.scorer_options, **(scorer_options or {})},
                                    {**preset.selector_options, **(selector_options or {})})
    options = replace(options, init=init_checkpoint(project, options.init))
    if preset.runner is not None:  # a method with a loop of its own
        return resolve(preset.runner)(project, options, say=say, on_step=on_step)
    if not project.rounds():
        chosen_seed = seed_method or preset.seed_method
        unit_of_seed = seed_unit(chosen_seed, preset.seed_unit)
        preset_budget = seed_budget is None  # the method's default: at least one unit on a small project
        seed_budget = seed_budget or preset.initial_budget(indoor)
        commit = seed_round(project, chosen_seed, unit_of_seed, seed_budget, seed=options.seed,
                            cell=cell, options={"device": options.device, "at_least_one": preset_budget})
        say(f"round 0: seeded {commit.points:,} points ({chosen_seed} {unit_of_seed}s, {seed_budget})")
        if preset_budget and _over_budget(project, seed_budget, commit.points):
            say(f"round 0: {seed_budget} buys no whole {unit_of_seed} of this project; one was taken instead "
                "(--seed-budget sets it)")
    settings = ScoreSettings(scorer=preset.scorer, unit=unit or preset.unit, cell=cell,
                             aggregate=preset.aggregate, seed=options.seed,
                             features=get_selector(preset.selector).needs_features, keep=preset.keep,
                             options={**preset.scorer_options, **(scorer_options or {})})
    chosen_selector_options = {**preset.selector_options, **(selector_options or {})}
    sync_ledger(project)  # a labelling killed before its ledger update is recorded now
    start, target = round_plan(project, method, rounds, budget, settings.unit)
    while latest_round(project) < target:
        current = latest_round(project)
        round_budget = schedule[min(current - start, len(schedule) - 1)]
        adopt_init_model(project, current, options, say)
        train_and_evaluate(project, current, options, say, on_step)
        scored = score_round(project, current, keep_for_budget(project, settings, round_budget), device=options.device)
        say(f"round {current}: scored {scored} scene(s) with {preset.scorer} per {settings.unit}")
        queries = select_round(project, current, round_budget, selector=preset.selector, seed=options.seed,
                               method=method, train_options=asdict(options), options=chosen_selector_options)
        say(f"round {current}: selected {len(queries['queries'])} {settings.unit}(s), "
            f"{queries['spent_points']:,} points")
        if not label:
            return current
        commit = oracle_round(project, current)
        say(f"round {commit.round}: {commit.points:,} points labelled by the oracle" if not commit.skipped
            else f"round {commit.round} exists")
    current = latest_round(project)
    if final:
        train_and_evaluate(project, current, options, say, on_step)
    write_json(project.root / PLAN_FILE, {**read_json(project.root / PLAN_FILE, "round plan"), "done": True})
    return current


def _over_budget(project: Project, budget: str, points: int) -> bool:
    from pcal_cli.selection.budget import parse_budget
    from pcal_cli.steps.pool import training_points

    parsed = parse_budget(budget)
    return parsed.kind != "per_scene" and points > parsed.points(training_points(project))


def keep_for_budget(project: Project, settings: ScoreSettings, budget: Budget) -> ScoreSettings:
    """``settings`` with ``keep`` large enough for ``budget`` when the scorer stores only its
    candidates (JoPro's lowest 2 % of each scene): the selector fills a budget beyond the
    candidates with the next best points, so those must be stored too (any scene may fill it)."""
    from pcal_cli.acquisition import get_scorer
    from pcal_cli.steps.pool import training_points

    if "candidates" not in {**get_scorer(settings.scorer).options, **settings.options} or budget.kind == "per_scene":
        return settings
    return replace(settings, keep=max(settings.keep or 0, budget.points(training_points(project))))


def round_plan(project: Project, method: str, rounds: int, budget: str, unit: str) -> tuple[int, int]:
    """``(start, target)``: the round a ``pcal round`` run started from and the one it runs up to.
    A plan (``round_plan.json``) is written when a run starts and marked done at its end; a rerun
    with the same method, rounds, budget and unit after an interruption continues that plan
    instead of adding ``rounds`` more."""
    path = project.root / PLAN_FILE
    wanted = {"method": method, "rounds": rounds, "budget": budget, "unit": unit}
    if path.is_file():
        plan = read_json(path, "round plan")
        if not plan.get("done") and {k: plan.get(k) for k in wanted} == wanted:
            return int(plan.get("start", latest_round(project))), int(plan["target"])
    start = latest_round(project)
    target = start + rounds
    write_json(path, {**wanted, "start": start, "target": target, "done": False})
    return start, target
