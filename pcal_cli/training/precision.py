"""Mixed-precision training: ``--precision fp32 | bf16 | fp16``.

- ``fp32`` (default): no autocast, bit-for-bit reproducible on a CPU.
- ``bf16``: every training step (forward and backward) runs under ``torch.autocast`` with
  bfloat16, on CPU or CUDA, for every recipe. bfloat16 keeps float32's exponent range, so no loss
  scaling is needed. The sparse convolutions follow the autocast dtype; batch norm and the losses
  stay in float32.
- ``fp16``: CUDA only, supervised recipe only: autocast with float16 and a dynamic loss scaler
  (``torch.amp.GradScaler``), whose state restarts on a resume.

Weights, optimiser state and checkpoints stay float32 in every mode.
"""

from __future__ import annotations

import contextlib

import torch

from pcal_cli.errors import PcalError

PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device, plain_recipe: bool) -> None:
    """One clear error for a precision the device or the recipe cannot use."""
    if precision not in PRECISIONS:
        raise PcalError(f"unknown --precision '{precision}' (choose from {', '.join(PRECISIONS)})")
    if precision == "fp16" and device.type != "cuda":
        raise PcalError("--precision fp16 needs a CUDA device (on a CPU use --precision bf16)")
    if precision == "fp16" and not plain_recipe:
        raise PcalError("--precision fp16 trains the supervised recipe only; use --precision bf16 with "
                        "--semi, --reg or the scene-tag recipes")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of one training step (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def make_scaler(precision: str) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16, else ``None``."""
    return torch.amp.GradScaler("cuda") if precision == "fp16" else None
