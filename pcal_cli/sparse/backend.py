"""Which engine runs sparse convolutions: the built-in PyTorch one or an installed torchsparse.

``PCAL_SPARSE_BACKEND`` = ``auto`` (default) | ``torch`` | ``torchsparse``. ``auto`` uses torchsparse
only when it imports and the tensor is on CUDA (torchsparse v2.1 has no CPU kernels); otherwise the
built-in engine. Asking for ``torchsparse`` when it cannot be used raises :class:`PcalError`.
"""

from __future__ import annotations

import os
from functools import lru_cache

import torch

from pcal_cli.errors import PcalError

ENV_VAR = "PCAL_SPARSE_BACKEND"
BACKENDS = ("torch", "torchsparse")


@lru_cache(maxsize=1)
def torchsparse_import_error() -> str | None:
    """``None`` when ``import torchsparse`` works, else the reason on one line."""
    try:
        import torchsparse  # noqa: F401
    except Exception as exc:  # torchsparse may fail with more than ImportError (CUDA queries)
        return " ".join(f"{type(exc).__name__}: {exc}".split())
    return None


def torchsparse_available() -> bool:
    """Whether ``import torchsparse`` succeeds (checked once per process)."""
    return torchsparse_import_error() is None


def resolve_backend(device: torch.device | str | None = None) -> str:
    """``"torch"`` or ``"torchsparse"`` for tensors on ``device`` (default CPU), per ``ENV_VAR``."""
    choice = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    dev = torch.device(device if device is not None else "cpu")
    if choice == "torch":
        return "torch"
    if choice == "torchsparse":
        reason = torchsparse_import_error()
        if reason is not None:
            raise PcalError(
                f"{ENV_VAR}=torchsparse but torchsparse cannot be imported ({reason}); "
                f"install it or set {ENV_VAR}=torch"
            )
        if dev.type != "cuda":
            raise PcalError(
                f"{ENV_VAR}=torchsparse but the tensors are on {dev.type}; torchsparse runs only on CUDA"
            )
        return "torchsparse"
    if choice != "auto":
        raise PcalError(f"{ENV_VAR} must be auto, torch or torchsparse, not {choice!r}")
    return "torchsparse" if dev.type == "cuda" and torchsparse_available() else "torch"
