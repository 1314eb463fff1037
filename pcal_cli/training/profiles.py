"""Training profiles: the network size, voxel size and schedule that suit a kind of data.

``pcal prepare`` writes the dataset's profile into ``pcal.yaml`` (``training:``, plus the
``voxel_size``), and ``pcal train``, ``pcal round`` and ``pcal compare`` take every training
option the user does not give from there. A project without a ``training`` section (made by an
earlier version) falls back on :class:`~pcal_cli.training.supervised.TrainOptions`'s defaults.

Three step counts make the schedule:

- ``steps``: a network trained from scratch (round 0, or any round without warm start);
- ``finetune_steps``: a round that starts from the previous round's network (the papers'
  fine-tune per round, and the default of ``pcal compare``);
- ``full_steps``: the full-supervision reference (all training ground truth).

The values are sized for a 2-core CPU and measured (docs/benchmarks.md, "Training speed and the
schedules"). On the synthetic profile the reference converges by the benchmark's rule at 8,000
``full_steps`` (seed 0: 95.5 / 97.0 / 96.2 mIoU at 4,000 / 8,000 / 16,000 steps); the other
profiles' ``full_steps`` are not measured. The rounds are not converged: a round at 5 %
labelled, fine-tuned from the same network on the same labels, gains 5.4 points at 600 steps
and 2.5 more at 1,200; a round at 1 % of the points gains 4.3 from 1,200 to 2,400. The defaults
trade accuracy for minutes: ``steps`` 2,400 and ``finetune_steps`` 1,200 gave 0.8x of full
supervision with 1 % of the points (the benchmark's ``point_long`` track), and one more round to 3 %
fine-tuned 2,400 steps 0.93x with margin points (``point_long3``). On a GPU, raise
``finetune_steps`` first, then ``cr`` (1.0 is the published width) and lower the voxel size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pcal_cli.errors import PcalError, did_you_mean

#: The training options a profile (and ``pcal.yaml``'s ``training:``) may set, with their types.
PROFILE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "backbone": str, "cr": (int, float), "steps": int, "finetune_steps": int, "full_steps": int,
    "lr": (int, float), "optimizer": str, "weight_decay": (int, float), "batch_size": int, "max_points": int,
}


@dataclass(frozen=True)
class TrainingProfile:
    name: str
    voxel_size: float
    description: str
    train: dict[str, Any] = field(default_factory=dict)

    def to_config(self) -> dict[str, Any]:
        """The ``training:`` section of ``pcal.yaml``."""
        return {"profile": self.name, **self.train}


PROFILES: dict[str, TrainingProfile] = {
    p.name: p
    for p in (
        TrainingProfile("synthetic", 0.05, "the embedded synthetic rooms (about 1 point per 5 cm voxel)",
                        {"cr": 0.25, "steps": 1200, "finetune_steps": 300, "full_steps": 8000, "lr": 0.01,
                         "batch_size": 2, "max_points": 200_000}),
        TrainingProfile("demo", 0.05, "the quick start's demo: rooms of a few thousand points and a short "
                        "schedule that fit a comparison in about 3 minutes on 2 CPU cores",
                        {"cr": 0.25, "steps": 150, "finetune_steps": 50, "full_steps": 300, "lr": 0.01,
                         "batch_size": 4, "max_points": 200_000}),
        TrainingProfile("indoor", 0.05, "indoor scans (S3DIS, ScanNet, indoor folders): 5 cm voxels on a CPU",
                        {"cr": 0.25, "steps": 1200, "finetune_steps": 300, "full_steps": 4000, "lr": 0.01,
                         "batch_size": 2, "max_points": 100_000}),
        TrainingProfile("vehicle", 0.1, "vehicle LiDAR sweeps (SemanticKITTI): 10 cm voxels, crops of 60k points",
                        {"cr": 0.25, "steps": 1200, "finetune_steps": 300, "full_steps": 4000, "lr": 0.01,
                         "batch_size": 2, "max_points": 60_000}),
        TrainingProfile("aerial", 0.5, "airborne LiDAR and photogrammetry tiles: 0.5 m voxels, crops of 60k points",
                        {"cr": 0.25, "steps": 1200, "finetune_steps": 300, "full_steps": 4000, "lr": 0.01,
                         "batch_size": 2, "max_points": 60_000}),
    )
}


def get_profile(name: str) -> TrainingProfile:
    if name not in PROFILES:
        raise PcalError(f"unknown training profile '{name}' (choose from {', '.join(PROFILES)})"
                        f"{did_you_mean(name, PROFILES)}")
    return PROFILES[name]


def check_training_section(data: Any, where: str) -> dict[str, Any]:
    """``pcal.yaml``'s ``training:`` mapping, validated (one clear line per problem)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PcalError(f"{where}: 'training' must be a mapping of training options")
    unknown = sorted(set(data) - set(PROFILE_FIELDS) - {"profile"})
    if unknown:
        raise PcalError(f"{where}: unknown training option(s): {', '.join(unknown)} (known: "
                        f"{', '.join(PROFILE_FIELDS)})")
    for key, value in data.items():
        kind = str if key == "profile" else PROFILE_FIELDS[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise PcalError(f"{where}: training option '{key}' has the wrong type ({value!r})")
        if key not in ("profile", "backbone", "optimizer", "weight_decay") and not value > 0:
            raise PcalError(f"{where}: training option '{key}' must be positive, got {value!r}")
    return dict(data)
