"""Methods: one object each, the round engine's only view of a method.

A :class:`Method` declares everything the engine needs, by name: its seed (``seed_method``,
``seed_unit``, ``seed_budget``), its scorer (which may prepare round state before scoring, as
JoPro's flow: see the scorer's spec), its selector, its training recipe (``semi``, ``reg``,
``recipe``, ``dropout``), its warm-start policy, its labelling unit and budgets. A method that is
not score-select-label at all (WSegPC: scene tags, then pseudo-labels) names a ``runner``
(``"module:function"``, called instead of the loop), and one whose network other methods may
start from names an ``init_model`` (``pcal round --init NAME``). ``pcal round --method NAME`` looks
a method up here; a new method is one entry, here or in another package (entry point group
``pcal.methods``, see pcal_cli/plugins.py). Budgets and option defaults may differ for outdoor
projects (``indoor: false`` in ``pcal.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pcal_cli.errors import PcalError


@dataclass(frozen=True)
class Method:
    name: str
    scorer: str
    selector: str = "topk"
    unit: str = "region"
    aggregate: str = "mean"
    description: str = ""
    budget: str = "1%"  # per round
    outdoor_budget: str | None = None
    seed_method: str = "random"
    seed_unit: str = "region"
    seed_budget: str = "3%"
    outdoor_seed_budget: str | None = None
    scorer_options: dict[str, Any] = field(default_factory=dict)
    selector_options: dict[str, Any] = field(default_factory=dict)
    keep: int | None = None  # candidates kept per scene when scoring (point units)
    semi: str = "none"  # training recipe: "none" or "teacher-student"
    warm_start: bool = False  # start each round's networks from the previous round's
    reg: str = "none"  # training regulariser: "none" or "hybrid-contrastive"
    dropout: float = 0.0  # dropout trained before the classifier (MC-dropout samples it at scoring)
    recipe: str | None = None  # training recipe of its rounds (None: supervised; "scene-tags": WSegPC's)
    runner: str | None = None  # "module:function(project, options, say=, on_step=) -> round": its own loop
    init_model: str | None = None  # "module:function(project) -> checkpoint path" for --init NAME

    def round_budget(self, indoor: bool) -> str:
        return self.budget if indoor or self.outdoor_budget is None else self.outdoor_budget

    def initial_budget(self, indoor: bool) -> str:
        return self.seed_budget if indoor or self.outdoor_seed_budget is None else self.outdoor_seed_budget

    def split_options(self, given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Route ``-o`` options to the method's scorer or selector by name."""
        from pcal_cli.acquisition import get_scorer
        from pcal_cli.selection import get_selector

        scorer, selector = get_scorer(self.scorer), get_selector(self.selector)
        scorer_options, selector_options = {}, {}
        for key, value in given.items():
            if key in scorer.options:
                scorer_options[key] = value
            elif key in selector.options:
                selector_options[key] = value
            else:
                known = sorted({*scorer.options, *selector.options})
                raise PcalError(f"method '{self.name}' has no option '{key}' (its options: "
                                f"{', '.join(known) or 'none'})")
        return scorer_options, selector_options


#: ReDAL's protocol (Wu et al. 2021): random whole scenes as the seed, 2% (outdoor 1%) per round.
REDAL = dict(unit="region", budget="2%", outdoor_budget="1%", seed_unit="scene", seed_budget="3%",
             outdoor_seed_budget="1%", warm_start=True)  # the release fine-tunes each round

#: HPAL's protocol (Xu et al. 2023): random points, 0.02 % of the training points per round.
HPAL = dict(unit="point", budget="0.02%", seed_unit="point", seed_budget="0.02%", keep=4096)

#: JoPro's protocol (KBS 2025): random points as the seed, each round adds as many points again.
JOPRO = dict(unit="point", budget="0.02%", seed_unit="point", seed_budget="0.02%", warm_start=True)

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("random", "random", description="units drawn at random (the baseline every paper reports)"),
        Method("confidence", "confidence", description="least max-probability first"),
        Method("margin", "margin", description="smallest top-1 minus top-2 probability first"),
        Method("entropy", "entropy", description="highest softmax entropy first"),
        Method("mc_dropout", "mc_dropout", dropout=0.3,
               description="entropy of the mean of 10 passes of the dropout the network trains with (p 0.3)"),
        Method("coreset", "coreset", selector="kcenter", description="k-center greedy on pooled features"),
        Method("segment_entropy", "segment_entropy",
               description="entropy of the predicted-class histogram of a unit"),
        Method("vcd", "segment_entropy", unit="cell", scorer_options={"segments": "unit"},
               description="Annotator's voxel confusion degree: segment entropy of 0.25 m cells"),
        Method("redal", "redal", selector="diversity", **REDAL,
               description="ReDAL: entropy + colour + structure per region, diversity-aware selection"),
        Method("redal_ent", "entropy", **REDAL,
               description="ReDAL ablation ENT+Region: mean region entropy, top-k, ReDAL's budgets"),
        Method("redal_ent_div", "entropy", selector="diversity", **REDAL,
               description="ReDAL ablation ENT+Region+Div: region entropy + diversity-aware selection"),
        Method("redal_random", "random", **REDAL,
               description="random regions under ReDAL's protocol (its baseline)"),
        Method("hpal", "hmmu", selector="fds", semi="teacher-student", warm_start=True, **HPAL,
               description="HPAL: hierarchical min-margin + feature-distance suppression + teacher-student"),
        Method("hpal_mmu", "margin", **HPAL, description="HPAL ablation MMU: point margin only"),
        Method("hpal_hmmu", "hmmu", **HPAL, description="HPAL ablation HMMU: hierarchical margin, top-k"),
        Method("hpal_mmu_fds", "margin", selector="fds", **HPAL, description="HPAL ablation MMU+FDS"),
        Method("hpal_hmmu_fds", "hmmu", selector="fds", **HPAL, description="HPAL ablation HMMU+FDS (no TS)"),
        Method("hpal_random", "random", **HPAL, description="random points under HPAL's protocol"),
        Method("jopro", "fms", selector="jopro", reg="hybrid-contrastive", **JOPRO,
               description="JoPro: feature-mixing stability on a flow density + prototype/spatial suppression "
                           "+ hybrid contrastive training"),
        Method("wsegpc", "random", unit="point", seed_method="tags", recipe="scene-tags",
               runner="pcal_cli.steps.wsegpc:run_method", init_model="pcal_cli.steps.wsegpc:latest_model",
               description="WSegPC: scene tags only -> tag training, consistency, pseudo-labels, a fresh network"),
        Method("jopro_noreg", "fms", selector="jopro", **JOPRO,
               description="JoPro's scorer and selector without the contrastive regulariser"),
    )
}


def _check_method(name: str, entry: object) -> Method:
    from pcal_cli.plugins import named_spec

    return named_spec(name, entry, Method)


def all_methods() -> dict[str, Method]:
    """The built-in methods and those of installed plugins (entry point group ``pcal.methods``)."""
    from pcal_cli.plugins import load_plugins

    load_plugins("methods", METHODS, _check_method)
    return METHODS


def get_method(name: str) -> Method:
    """The method registered as ``name`` (case-insensitive); :class:`PcalError` if unknown."""
    from pcal_cli.plugins import lookup

    return lookup("methods", METHODS, _check_method, name)
