"""Methods are named presets: a scorer, a selector and a default labelling unit.

``pcal round --method NAME`` looks a method up here; a new method is one entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from pcal_cli.errors import PcalError


@dataclass(frozen=True)
class Method:
    name: str
    scorer: str
    selector: str = "topk"
    unit: str = "region"
    aggregate: str = "mean"
    description: str = ""


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("random", "random", description="units drawn at random (the baseline every paper reports)"),
        Method("confidence", "confidence", description="least max-probability first"),
        Method("margin", "margin", description="smallest top-1 minus top-2 probability first"),
        Method("entropy", "entropy", description="highest softmax entropy first"),
        Method("mc_dropout", "mc_dropout", description="entropy of the mean of 10 dropout passes"),
        Method("coreset", "coreset", selector="kcenter", description="k-center greedy on pooled features"),
        Method("segment_entropy", "segment_entropy",
               description="entropy of the predicted-class histogram of a unit"),
        Method("vcd", "segment_entropy", unit="cell",
               description="Annotator's voxel confusion degree: segment entropy of 0.25 m cells"),
    )
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise PcalError(f"unknown method '{name}' (choose from {', '.join(METHODS)})")
    return METHODS[name]
