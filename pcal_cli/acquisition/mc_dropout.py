"""MC-dropout: the entropy of the mean softmax over ``T`` stochastic forward passes.

Dropout has to sample at score time while everything else (BatchNorm above all) stays in eval
mode. :func:`enable_dropout` does that for models with ``nn.Dropout*`` modules (SPVCNN);
:func:`with_classifier_dropout` adds dropout in front of ``model.classifier`` for models
without any (MinkUNet), through a forward pre-hook that is removed on exit, so the model's
code and ``state_dict`` are untouched. :func:`mc_dropout_probs` runs the passes with a seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pcal_cli.acquisition.uncertainty import CHUNK_ROWS, entropy
from pcal_cli.errors import PcalError

#: The standard MC-dropout settings of the baselines: 10 passes, p = 0.3 where dropout is added.
PASSES = 10
CLASSIFIER_DROPOUT = 0.3

DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                 nn.FeatureAlphaDropout)


def mc_dropout_entropy(prob_passes: np.ndarray) -> np.ndarray:
    """Entropy (nats) of the mean over passes of ``prob_passes`` ``[T, N, C]``, per point ``[N]``."""
    prob_passes = np.asarray(prob_passes)
    if prob_passes.ndim != 3 or prob_passes.shape[0] < 1:
        raise PcalError(f"MC-dropout probabilities must be [T, N, C], got shape {prob_passes.shape}")
    n = prob_passes.shape[1]
    out = np.empty(n, dtype=np.float64 if prob_passes.dtype == np.float64 else np.float32)
    for start in range(0, n, CHUNK_ROWS):
        out[start:start + CHUNK_ROWS] = entropy(prob_passes[:, start:start + CHUNK_ROWS].mean(axis=0))
    return out


def has_dropout(model: nn.Module) -> bool:
    """Whether ``model`` contains an ``nn.Dropout*`` module."""
    return any(isinstance(m, DROPOUT_TYPES) for m in model.modules())


@contextmanager
def enable_dropout(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for every module except ``nn.Dropout*`` ones, which sample; modes restored on exit."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        for m in model.modules():
            if isinstance(m, DROPOUT_TYPES):
                m.train()
        yield model
    finally:
        for m, training in modes:
            m.training = training


@contextmanager
def with_classifier_dropout(model: nn.Module, p: float = CLASSIFIER_DROPOUT,
                            classifier: nn.Module | None = None) -> Iterator[nn.Module]:
    """Dropout with rate ``p`` on the input of ``model.classifier`` (or ``classifier``), always
    sampling, whatever the mode; the hook is removed on exit. Does not change module modes."""
    if not 0.0 <= p < 1.0:
        raise PcalError(f"dropout rate must lie in [0, 1), got {p}")
    head = classifier if classifier is not None else getattr(model, "classifier", None)
    if not isinstance(head, nn.Module):
        raise PcalError(f"{type(model).__name__} has no `classifier` module to add dropout before")

    def drop_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (F.dropout(args[0], p, training=True), *args[1:])

    handle = head.register_forward_pre_hook(drop_input)
    try:
        yield model
    finally:
        handle.remove()


@contextmanager
def mc_dropout_mode(model: nn.Module, p: float = CLASSIFIER_DROPOUT) -> Iterator[nn.Module]:
    """:func:`enable_dropout`, plus :func:`with_classifier_dropout` when the model has no dropout."""
    with ExitStack() as stack:
        stack.enter_context(enable_dropout(model))
        if not has_dropout(model):
            stack.enter_context(with_classifier_dropout(model, p))
        yield model


@torch.no_grad()
def mc_dropout_probs(model: nn.Module, x: Any, passes: int = PASSES, seed: int = 0,
                     p: float = CLASSIFIER_DROPOUT) -> np.ndarray:
    """Mean softmax ``[V, C]`` (float32) of ``passes`` dropout passes of ``model(x)``.

    ``model(x)`` returns logits or ``(logits, ...)``. The dropout masks come from a torch
    generator seeded with ``seed`` inside :func:`torch.random.fork_rng`, so the global random
    state is untouched and the result is reproducible. ``entropy`` of the result equals
    :func:`mc_dropout_entropy` of the stacked passes.
    """
    if passes < 1:
        raise PcalError(f"MC-dropout needs at least one pass, got {passes}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    devices: list[int] = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    total: torch.Tensor | None = None
    with torch.random.fork_rng(devices=devices), mc_dropout_mode(model, p):
        torch.manual_seed(seed)
        for _ in range(passes):
            out = model(x)
            logits = out[0] if isinstance(out, (tuple, list)) else out
            prob = torch.softmax(logits.float(), dim=1)
            total = prob if total is None else total.add_(prob)
    assert total is not None
    return (total / passes).cpu().numpy()
