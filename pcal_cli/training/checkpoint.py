"""Checkpoints: model weights + the resolved configuration, loaded with ``weights_only=True``.

A checkpoint is a plain dict of tensors and Python primitives (no pickled objects), so loading a
file from someone else cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pcal_cli.atomic import atomic_open
from pcal_cli.errors import PcalError
from pcal_cli.models import build_model

FORMAT = "pcal-checkpoint-1"


def save_checkpoint(path: Path, model: torch.nn.Module, config: dict[str, Any], step: int,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    extras: dict[str, torch.nn.Module] | None = None) -> None:
    """Write a checkpoint atomically (temporary file + rename).

    ``model`` is the network evaluation and scoring use; ``extras`` are other modules of the
    recipe kept for resuming and warm starts (teacher-student: ``student``; the contrastive
    regulariser: ``teacher`` and ``subprototypes``), each saved as its state dict under its name.
    """
    state: dict[str, Any] = {
        "format": FORMAT,
        "config": config,
        "step": int(step),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    for name, module in (extras or {}).items():
        state[name] = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    with atomic_open(path, "wb") as handle:
        torch.save(state, handle)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; anything but a pcal checkpoint is a clear error."""
    if not Path(path).is_file():
        raise PcalError(f"{path}: no checkpoint (train this round first)")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # corrupt, truncated or carrying pickled objects
        raise PcalError(f"{path}: not a loadable pcal checkpoint ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise PcalError(f"{path}: not a pcal checkpoint")
    return state


def load_model(path: Path, device: torch.device | str = "cpu", *, classes: list[str] | None = None,
               channels: list[str] | None = None, weights: str = "model") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The one way from a checkpoint file to a network on ``device``: ``(model, state)``.

    ``classes`` and ``channels`` (a project's) must match what the network was trained for;
    ``weights`` picks another set of weights the checkpoint may hold (``"teacher"``), falling back
    to the trained model's."""
    state = load_checkpoint(path, device)
    config = state["config"]
    if (classes is not None and config.get("classes") != list(classes)) or (
            channels is not None and config.get("channels") != list(channels)):
        raise PcalError(f"{path}: trained for other classes or input channels than this project")
    return model_from_checkpoint({**state, "model": state.get(weights, state["model"])}, device), state


def model_from_checkpoint(state: dict[str, Any], device: torch.device | str = "cpu") -> torch.nn.Module:
    """Rebuild the network recorded in a checkpoint and load its weights."""
    config = state["config"]
    model = build_model(config["backbone"], config["in_channels"], config["num_classes"], cr=config["cr"],
                        dropout=float(config.get("dropout") or 0.0))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise PcalError(f"checkpoint weights do not fit a {config['backbone']} (cr {config['cr']}): "
                        f"{str(exc).splitlines()[0]}") from None
    return model.to(device)
