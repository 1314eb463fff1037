"""Segmentation backbones on sparse voxels, by name: ``build_model("minkunet", 6, 13, cr=0.5)``.

Every model takes a :class:`~pcal_cli.sparse.SparseTensor` of unique voxels and returns
``(logits [V, num_classes], features [V, model.feature_dim])`` in the input's row order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from pcal_cli.errors import PcalError
from pcal_cli.models.minkunet import MinkUNet
from pcal_cli.models.spvcnn import SPVCNN

MODELS: dict[str, Callable[..., nn.Module]] = {"minkunet": MinkUNet, "spvcnn": SPVCNN}


def build_model(
    name: str,
    in_channels: int,
    num_classes: int,
    cr: float = 1.0,
    *,
    seed: int | None = None,
    **kw: Any,
) -> nn.Module:
    """The model registered as ``name`` (case-insensitive), with channel ratio ``cr``.

    With ``seed`` the weights are drawn from a CPU generator seeded with it, leaving the global
    torch random state untouched; without it they come from the global generator
    (``torch.manual_seed``). Raises :class:`PcalError` for an unknown name or bad sizes.
    """
    from pcal_cli.plugins import lookup

    key = name.strip().lower()
    factory = lookup("backbones", MODELS, _check_model, name)
    if in_channels < 1 or num_classes < 1:
        raise PcalError(
            f"model {key}: in_channels and num_classes must be positive, "
            f"got {in_channels} and {num_classes}"
        )
    try:
        if seed is None:
            return factory(in_channels, num_classes, cr, **kw)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return factory(in_channels, num_classes, cr, **kw)
    except ValueError as exc:
        raise PcalError(f"model {key}: {exc}") from exc


def _check_model(name: str, entry: object) -> Callable[..., nn.Module]:
    if not callable(entry):
        raise TypeError(f"expected a model class or factory (in_channels, num_classes, cr), got {type(entry).__name__}")
    return entry


def all_models() -> dict[str, Callable[..., nn.Module]]:
    """The built-in backbones and those of installed plugins (entry point group ``pcal.backbones``)."""
    from pcal_cli.plugins import load_plugins

    load_plugins("backbones", MODELS, _check_model)
    return MODELS


__all__ = ["MODELS", "all_models", "MinkUNet", "SPVCNN", "build_model"]
