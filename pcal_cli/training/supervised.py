"""Supervised training on the labels known in a round (or on all ground truth with ``full``).

Every step draws its scenes and augmentations from ``numpy.random.default_rng([seed, step])`` and
seeds torch with ``(seed, step)`` too, so a run resumed from its partial checkpoint continues
exactly as an uninterrupted one would, and the same seed gives the same weights on a CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcal_cli import __version__
from pcal_cli.data.ply import read_ply
from pcal_cli.data.scene import Scene
from pcal_cli.errors import PcalError, did_you_mean
from pcal_cli.models import MODELS, build_model
from pcal_cli.project import Project
from pcal_cli.rounds import labelled_scenes, load_labels, run_dir
from pcal_cli.training import distributed
from pcal_cli.training.checkpoint import load_checkpoint, save_checkpoint
from pcal_cli.training.data import input_channels
from pcal_cli.training.mean_teacher import SEMI_RECIPES
from pcal_cli.training.precision import PRECISIONS, autocast, check_precision, make_scaler
from pcal_cli.training.recipes import make_recipe
from pcal_cli.training.scenes import SceneList
from pcal_cli.layout import MODEL_FILE, PARTIAL_FILE

OPTIMIZERS = ("adamw", "sgd")
REG_RECIPES = ("none", "hybrid-contrastive")
RECIPES = ("supervised", "scene-tags", "scene-tags-consistency")
TAG_RECIPES = RECIPES[1:]


@dataclass
class TrainOptions:
    """Training hyper-parameters (all recorded in the checkpoint)."""

    backbone: str = "minkunet"
    cr: float = 0.5
    steps: int = 1000
    finetune_steps: int | None = None  # steps of a round that starts from the previous round's model (None: steps)
    epochs: float | None = None
    lr: float = 2e-3
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    batch_size: int = 2
    max_points: int = 200_000
    device: str = "auto"
    seed: int = 0
    warm_start: bool | None = None  # None: no (pcal round: the method's choice)
    checkpoint_every: int = 100
    semi: str | None = None  # None or "none": supervised only; "teacher-student": HPAL's recipe
    ema_keep: float = 0.955  # teacher-student: EMA keep rate per step
    pseudo_threshold: float = 0.75  # teacher-student: teacher confidence for a pseudo-label
    dropout: float | None = None  # dropout on the classifier's input, trained (None: 0, or the method's: mc_dropout)
    ts_evaluate: str = "student"  # teacher-student: the network saved as the model ("student", or "teacher")
    ts_elastic: bool = True  # teacher-student: elastic distortion in the student's strong view (HPAL's release)
    ts_kl: str = "class-mean"  # teacher-student: KL normalised over classes too (HPAL's release), or "row-mean"
    ts_ramp: float = 0.3  # teacher-student: consistency ramp-up and pseudo-label warm-up (fraction of steps, or steps)
    reg: str | None = None  # None or "none"; "hybrid-contrastive": JoPro's regulariser
    reg_weights: tuple[float, float, float] = (0.1, 0.1, 0.1)  # alignment, point InfoNCE, sub-prototype InfoNCE
    reg_conf: float = 0.8  # teacher confidence of the points the regulariser uses
    reg_temperature: float = 0.1
    recipe: str | None = None  # None or "supervised"; "scene-tags", "scene-tags-consistency": WSegPC
    # scene-tag recipes: the linear ramp from 0 of each stage's ramped losses (stage 1: scene tags and
    # cross-modal; stage 2: consistency), a fraction < 1 of the stage's steps or steps; None: the
    # release's 2400 iterations as a share of its stages (0.04 of stage 1, 0.08 of stage 2)
    tag_warmup: float | None = None
    pseudo_calibration: str = "prior"  # wsegpc: stage 3's pseudo-labels, prior (argmax of score / class prior) | none
    init: str | None = None  # a checkpoint to start from (any round, stage or project with this layout)
    precision: str = "fp32"  # "bf16" (CPU or CUDA) or "fp16" (CUDA): mixed precision, see training/precision.py
    tag_drop: float = 0.5  # scene-tag recipes: probability of dropping each tagged floor/ceiling/wall surface
    image_features: str | None = None  # scene-tag recipes: folder of <scene>.npy per-point 2D features


@dataclass
class TrainResult:
    path: Path
    skipped: bool
    steps: int
    final_loss: float | None
    seconds: float
    labelled_points: int
    labelled_scenes: int
    resumed_from: int = 0


StepCallback = Callable[[int, int, float], None]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; asking for CUDA without it is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PcalError("--device cuda: no CUDA device is available (this torch build: "
                            f"{torch.__version__}); use --device cpu")
        return torch.device(name)
    raise PcalError(f"unknown device '{name}' (choose auto, cpu or cuda){did_you_mean(name, ('auto', 'cpu', 'cuda'))}")


def profile_options(project: Project, given: dict[str, Any], *, full: bool = False) -> TrainOptions:
    """Training options: those ``given`` (``None`` = not given), else the project's training
    profile (``pcal.yaml``'s ``training:``), else :class:`TrainOptions`'s defaults. With ``full``
    the profile's ``full_steps`` replace its ``steps`` (the full-supervision reference)."""
    profile = {k: v for k, v in project.config.training.items() if k != "profile"}
    full_steps = profile.pop("full_steps", None)
    if full:  # the reference trains from scratch: no fine-tune schedule
        profile.pop("finetune_steps", None)
        if full_steps is not None:
            profile["steps"] = full_steps
    unknown = sorted(set(given) - set(TrainOptions.__dataclass_fields__))
    if unknown:
        raise PcalError(f"unknown training option(s): {', '.join(unknown)}")
    return TrainOptions(**{**profile, **{k: v for k, v in given.items() if v is not None}})


def profile_full_steps(project: Project, options: TrainOptions) -> int:
    """Steps of the full-supervision reference: the profile's ``full_steps``, else twice ``steps``."""
    return int(project.config.training.get("full_steps") or 2 * options.steps)


def check_options(options: TrainOptions) -> None:
    if options.backbone not in MODELS:
        raise PcalError(f"unknown backbone '{options.backbone}' (choose from {', '.join(MODELS)})"
                        f"{did_you_mean(options.backbone, MODELS)}")
    if options.optimizer not in OPTIMIZERS:
        raise PcalError(f"unknown optimizer '{options.optimizer}' (choose from {', '.join(OPTIMIZERS)})")
    for name in ("cr", "lr", "batch_size", "max_points", "checkpoint_every"):
        if not getattr(options, name) > 0:
            raise PcalError(f"--{name.replace('_', '-')} must be positive")
    if options.epochs is None and options.steps < 1:
        raise PcalError("--steps must be at least 1")
    if options.finetune_steps is not None and options.finetune_steps < 1:
        raise PcalError("--finetune-steps must be at least 1")
    if options.epochs is not None and options.epochs <= 0:
        raise PcalError("--epochs must be positive")
    if options.semi not in (None, *SEMI_RECIPES):
        raise PcalError(f"unknown --semi recipe '{options.semi}' (choose from {', '.join(SEMI_RECIPES)})")
    if options.dropout is not None and not 0.0 <= options.dropout < 1.0:
        raise PcalError(f"--dropout must lie in [0, 1), got {options.dropout}")
    if options.ts_kl not in ("class-mean", "row-mean"):
        raise PcalError(f"--ts-kl must be class-mean or row-mean, got '{options.ts_kl}'")
    from pcal_cli.weak.pseudo import PSEUDO_CALIBRATIONS

    if options.pseudo_calibration not in PSEUDO_CALIBRATIONS:
        raise PcalError(f"--pseudo-calibration '{options.pseudo_calibration}': choose one of "
                        f"{', '.join(PSEUDO_CALIBRATIONS)}")
    if options.tag_warmup is not None and options.tag_warmup < 0:
        raise PcalError(f"--tag-warmup must be >= 0 (a fraction of the steps, or steps), got {options.tag_warmup}")
    if options.ts_ramp < 0:
        raise PcalError(f"--ts-ramp must be >= 0 (a fraction of the steps, or steps), got {options.ts_ramp}")
    if options.ts_evaluate not in ("student", "teacher"):
        raise PcalError(f"--ts-evaluate must be student or teacher, got '{options.ts_evaluate}'")
    if not 0.0 <= options.ema_keep <= 1.0 or not 0.0 <= options.pseudo_threshold <= 1.0:
        raise PcalError("--ema-keep and --pseudo-threshold must lie in [0, 1]")
    if options.recipe not in (None, *RECIPES):
        raise PcalError(f"unknown --recipe '{options.recipe}' (choose from {', '.join(RECIPES)})")
    if options.reg not in (None, *REG_RECIPES):
        raise PcalError(f"unknown --reg regulariser '{options.reg}' (choose from {', '.join(REG_RECIPES)})")
    if options.semi == "teacher-student" and options.reg == "hybrid-contrastive":
        raise PcalError("--semi teacher-student and --reg hybrid-contrastive cannot be combined")
    if len(options.reg_weights) != 3 or min(options.reg_weights) < 0 or options.reg_temperature <= 0:
        raise PcalError("--reg-weights needs three non-negative weights and --reg-temperature must be positive")
    if options.precision not in PRECISIONS:
        raise PcalError(f"unknown --precision '{options.precision}' (choose from {', '.join(PRECISIONS)})"
                        f"{did_you_mean(options.precision, PRECISIONS)}")
    if not 0.0 <= options.tag_drop <= 1.0:
        raise PcalError(f"--tag-drop must lie in [0, 1], got {options.tag_drop}")
    if options.image_features is not None:
        if options.recipe not in TAG_RECIPES:
            raise PcalError("--image-features guides the scene-tag recipes only (--recipe scene-tags or "
                            "scene-tags-consistency, or pcal round --method wsegpc)")
        if not Path(options.image_features).is_dir():
            raise PcalError(f"--image-features {options.image_features}: no such folder")


def load_training_scenes(project: Project, round_index: int | None) -> SceneList:
    """Training scenes with the labels the round knows (``None``: all ground truth, the reference),
    as a :class:`SceneList` read on demand.

    The PLY's ground truth is dropped from every scene returned for a round.
    """
    if not project.scenes("train"):
        raise PcalError(f"{project.root}: the project has no training scenes")
    names = project.scenes("train") if round_index is None else labelled_scenes(project, round_index)

    def load(name: str) -> tuple[Scene, np.ndarray] | None:
        scene = read_ply(project.scene_path("train", name))
        if round_index is None:
            labels = scene.label.copy()
        else:
            labels = load_labels(project, round_index, name, len(scene))
        scene.label = np.full(len(scene), -1, dtype=np.int16)  # never let ground truth leak
        return (scene, labels) if (labels >= 0).any() else None

    scenes = SceneList.of_usable(names, load)
    if not scenes:
        where = "the training split" if round_index is None else f"round {round_index}"
        raise PcalError(f"{project.root}: {where} has no labelled points to train on")
    return scenes


def load_tagged_scenes(project: Project, round_index: int | None) -> SceneList:
    """Training scenes with the round's tags and labels: ``(scene, labels, tags [C])`` (WSegPC)."""
    from pcal_cli.rounds import load_tags

    if round_index is None:
        raise PcalError("--recipe scene-tags trains on a round's tags, not with --full")
    tags = load_tags(project, round_index)
    if not tags:
        raise PcalError(f"round {round_index} has no scene tags ('pcal label --oracle --unit tags' or "
                        "'pcal label import-tags FILE')")

    def load(name: str) -> tuple[Scene, np.ndarray, np.ndarray]:
        scene = read_ply(project.scene_path("train", name))
        labels = load_labels(project, round_index, name, len(scene))
        scene.label = np.full(len(scene), -1, dtype=np.int16)  # never let ground truth leak
        return scene, labels, tags[name]

    return SceneList.of_usable(sorted(tags), load)


def load_labels_from(project: Project, folder: Path) -> SceneList:
    """Training scenes with the labels of a folder of ``<scene>.npy`` (e.g. WSegPC's pseudo-labels)."""
    def load(name: str) -> tuple[Scene, np.ndarray] | None:
        path = folder / f"{name}.npy"
        scene = read_ply(project.scene_path("train", name))
        labels = np.load(path, allow_pickle=False)
        if labels.shape != (len(scene),):
            raise PcalError(f"{path}: {labels.shape} labels for {len(scene)} points")
        scene.label = np.full(len(scene), -1, dtype=np.int16)
        return (scene, labels.astype(np.int16)) if (labels >= 0).any() else None

    scenes = SceneList.of_usable([n for n in project.scenes("train") if (folder / f"{n}.npy").is_file()], load)
    if not scenes:
        raise PcalError(f"{folder}: no labels to train on")
    return scenes


def train(project: Project, round_index: int | None, options: TrainOptions, *, resume: bool = False,
          force: bool = False, on_step: StepCallback | None = None, folder: Path | None = None,
          labels_from: Path | None = None) -> TrainResult:
    """Train a model on a round's labels (``round_index=None``: the full-supervision reference)
    and write ``model.pt`` in the round folder (or in ``folder``). ``labels_from`` trains on a
    folder of label files instead of the round's (WSegPC's pseudo-labels)."""
    check_options(options)
    world = distributed.launched_world_size()
    distributed.check_supported(options, world)
    device = distributed.local_device(resolve_device(options.device))
    check_precision(options.precision, device, plain_recipe=options.semi in (None, "none") and options.reg in (None, "none")
                    and options.recipe in (None, "supervised"))
    folder = folder or run_dir(project, round_index)
    final_path, partial_path = folder / MODEL_FILE, folder / PARTIAL_FILE
    if final_path.exists() and not force:
        return TrainResult(final_path, True, 0, None, 0.0, 0, 0)
    if partial_path.exists() and not (resume or force):
        raise PcalError(f"{partial_path}: an interrupted training run exists; pass --resume to continue it "
                        "or --force to start over")
    if options.recipe in TAG_RECIPES:
        scenes = load_tagged_scenes(project, round_index)
    elif labels_from is not None:
        scenes = load_labels_from(project, labels_from)
    else:
        scenes = load_training_scenes(project, round_index)
    distributed.check_scene_count(len(scenes), options.batch_size, world)
    if max(len(item[0]) for item in scenes) < 2:
        raise PcalError(f"{project.root}: every training scene has a single point; a training batch needs at "
                        "least two voxels (batch normalisation)")
    steps = options.steps
    if options.finetune_steps is not None and options.warm_start and round_index is not None and round_index > 0:
        steps = options.finetune_steps
    if options.epochs is not None:
        steps = max(1, math.ceil(options.epochs * len(scenes) / options.batch_size))
    resolved = _resolved_config(project, round_index, options, steps, scenes)
    with distributed.process_group(device):
        return _train_loop(project, round_index, options, scenes, steps, resolved, device, final_path,
                           partial_path, resume=resume, force=force, on_step=on_step)


def _train_loop(project: Project, round_index: int | None, options: TrainOptions, scenes: list, steps: int,
                resolved: dict[str, Any], device: torch.device, final_path: Path, partial_path: Path, *,
                resume: bool, force: bool, on_step: StepCallback | None) -> TrainResult:
    """Build, (re)load and train the network; under torchrun every rank runs this, rank 0 writes."""
    config = project.config
    torch.manual_seed(options.seed)
    model = build_model(options.backbone, resolved["in_channels"], config.num_classes, cr=options.cr,
                        dropout=options.dropout or 0.0,
                        seed=options.seed).to(device)
    recipe = make_recipe(model, options, config.num_classes)
    recipe.scaler = make_scaler(options.precision)
    recipe.total_steps = steps
    if options.init is not None:
        start_from = load_checkpoint(Path(options.init))
        if (start_from["config"]["backbone"], start_from["config"]["cr"]) != (options.backbone, options.cr) or \
                start_from["config"]["num_classes"] != config.num_classes:
            raise PcalError(f"--init: {options.init} is a {start_from['config']['backbone']} cr "
                            f"{start_from['config']['cr']} with {start_from['config']['num_classes']} classes, not "
                            f"{options.backbone} cr {options.cr} with {config.num_classes}")
        recipe.load(start_from)
    if options.warm_start and round_index is not None and round_index > 0:
        previous = project.round_dir(round_index - 1) / MODEL_FILE
        state = load_checkpoint(previous)
        if state["config"]["backbone"] != options.backbone or state["config"]["cr"] != options.cr:
            raise PcalError(f"--warm-start: {previous} is a {state['config']['backbone']} cr "
                            f"{state['config']['cr']}, not {options.backbone} cr {options.cr}")
        recipe.load(state)
        resolved["warm_start_from"] = str(previous.relative_to(project.root))
    optimizer = _optimizer(model, options)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine(steps))
    start = 0
    if resume and partial_path.exists() and not force:
        state = load_checkpoint(partial_path, device)
        if state["config"] != resolved:
            raise PcalError(f"{partial_path}: was started with other settings; pass the same options, "
                            "or --force to start over")
        recipe.load(state)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = state["step"]
    # under torchrun: every rank must train the same data from the same step and weights
    distributed.check_same("the training scenes or the step to resume from", len(scenes),
                           resolved["labelled_points"], start, steps)
    distributed.broadcast_state([model, *recipe.extras().values()])

    main = distributed.is_main()  # only rank 0 writes checkpoints and reports progress
    began = time.perf_counter()
    loss_value = None
    model.train()
    for step in range(start, steps):
        with autocast(options.precision, device):
            loss_value = recipe.step(optimizer, scenes, config, step, device)
        scheduler.step()
        done = step + 1
        if main and done % options.checkpoint_every == 0 and done < steps:
            save_checkpoint(partial_path, recipe.evaluated(), resolved, done, optimizer, scheduler,
                            extras=recipe.extras())
        if main and on_step is not None:
            on_step(done, steps, loss_value)
    if main:
        save_checkpoint(final_path, recipe.evaluated(), resolved, steps, extras=recipe.extras())
        partial_path.unlink(missing_ok=True)
    distributed.wait_for_all()  # every rank returns once model.pt is written
    return TrainResult(final_path, False, steps, loss_value, time.perf_counter() - began,
                       resolved["labelled_points"], len(scenes), resumed_from=start)


def _optimizer(model: torch.nn.Module, options: TrainOptions) -> torch.optim.Optimizer:
    if options.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=options.lr, momentum=0.9, nesterov=True,
                               weight_decay=options.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)


def _cosine(steps: int) -> Callable[[int], float]:
    warmup = max(1, min(100, steps // 20))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _resolved_config(project: Project, round_index: int | None, options: TrainOptions, steps: int,
                     scenes: SceneList) -> dict[str, Any]:
    config = project.config
    resolved = asdict(options)
    resolved.update(
        steps=steps,
        round=round_index,
        full=round_index is None,
        in_channels=input_channels(config.channels),
        num_classes=config.num_classes,
        classes=list(config.classes),
        channels=list(config.channels),
        voxel_size=config.voxel_size,
        labelled_points=int(sum(int((item[1] >= 0).sum()) for item in scenes)),
        labelled_scenes=list(scenes.names),
        pcal_version=__version__,
        warm_start_from=None,
    )
    resolved.pop("device")  # where it ran does not change what it is
    return resolved
