"""The steps every round runner shares: which split rounds are evaluated on, and train-then-evaluate.

``pcal round`` (steps/round.py), ``pcal compare`` and the methods with their own loop (WSegPC's
stages, steps/wsegpc.py) all use these, so none of them imports another.
"""

from __future__ import annotations

from collections.abc import Callable

from pcal_cli.evaluation.evaluate import METRICS_FILE, evaluate
from pcal_cli.project import Project
from pcal_cli.rounds import read_json
from pcal_cli.training.supervised import TrainOptions, train

Say = Callable[[str], None]


def evaluation_split(project: Project) -> str | None:
    """The split rounds are evaluated on: test, else val, else none."""
    for split in ("test", "val"):
        if project.scenes(split):
            return split
    return None


def train_and_evaluate(project: Project, round_index: int, options: TrainOptions, say: Say,
                       on_step: Callable[[int, int, float], None] | None = None) -> None:
    """Train round ``round_index`` (skipped when its model exists) and evaluate it once."""
    result = train(project, round_index, options, resume=True, on_step=on_step)
    say(f"round {round_index}: " + ("model exists" if result.skipped else
                                    f"trained {result.steps} steps, final loss {result.final_loss:.3f}"))
    split = evaluation_split(project)
    if split is None:
        return
    path = project.round_dir(round_index) / METRICS_FILE
    if path.is_file() and split in read_json(path, "metrics"):
        return
    metrics = evaluate(project, round_index, split, device=options.device)
    say(f"round {round_index}: mIoU {100 * (metrics['miou'] or 0):.1f} on {split}, "
        f"{metrics['labelled_percent']:.3f}% labelled")
