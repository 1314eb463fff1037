"""WSegPC's cross-modal guidance (CMG): point-to-pixel contrastive distillation, in torch, from a
user's per-point 2D features.

pcal does not project images itself: a user who has images, depth and poses computes, with any
frozen 2D network, one feature vector per point of a scene (the feature of the pixel the point
projects to, occlusion-checked) and gives it as a file read by :func:`read_point_features`:

- ``.npy`` (numpy's own format, read with ``allow_pickle=False``), a 2-D array ``[N, D]`` of a
  real numeric dtype (float16/32/64 or integers; stored as float32), ``N`` = the number of points
  of the scene's PLY in file order, ``D >= 1`` the same for every scene;
- a row of NaN means "this point is seen by no image"; such rows come back as zeros with
  ``seen = False``. Every other value must be finite (a row with only some NaN, or an infinity,
  is refused). When a point is seen by several views, the user averages (or picks) beforehand.

:func:`crossmodal_infonce` is the symmetric InfoNCE over paired rows: with ``a_i =
normalise(head3(f3d_i))`` and ``b_i = normalise(head2(f2d_i))``, ``S_ij = a_i . b_j / tau``,

    ``loss = 1/2 [ CE(S, I) + CE(S^T, I) ]``   (row ``i``'s positive is column ``i``)

over the rows whose image feature is usable (finite and not all zero); the others are skipped.
The image features are detached (they come from a frozen network); the gradient reaches the point
features and both heads. Negatives are the other rows given, so call it once per scene (WSegPC
contrasts within a scene, with up to 512 pairs: ``max_rows`` samples that many with ``generator``)
and sum or average over the scenes of a batch. Fewer than 2 usable rows give an exact 0 still
attached to the point features' graph. WSegPC's ``tau = 0.07`` and weight 0.05.

Differences from the release: it trains its 2D network (ResNet-50) jointly and maps each modality
into the other's space with one linear layer (96 -> 2048 and 2048 -> 96), contrasting against the
stop-gradient features of the other modality in each direction. pcal's 2D features are fixed, so a
2D -> 3D direction against stop-gradient 3D features would train nothing but its head; instead both
modalities are projected into one shared space (:class:`ProjectionHead`, a small MLP, default 128
dimensions) and the point features receive gradient from both directions (CLIP-style).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pcal_cli.errors import PcalError

#: WSegPC's InfoNCE temperature.
TEMPERATURE = 0.07
#: WSegPC's number of point-pixel pairs per scene.
MAX_PAIRS = 512


class ProjectionHead(nn.Module):
    """``Linear(in_dim, hidden) -> ReLU -> Linear(hidden, out_dim)`` (``hidden`` defaults to ``out_dim``)."""

    def __init__(self, in_dim: int, out_dim: int = 128, hidden: int | None = None) -> None:
        super().__init__()
        hidden = out_dim if hidden is None else hidden
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise PcalError(f"projection head: {name} must be an integer >= 1, got {value!r}")
        self.in_dim, self.out_dim, self.hidden = int(in_dim), int(out_dim), int(hidden)
        self.net = nn.Sequential(nn.Linear(self.in_dim, self.hidden), nn.ReLU(inplace=True),
                                 nn.Linear(self.hidden, self.out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def usable_rows(image_feats: torch.Tensor) -> torch.Tensor:
    """``[P]`` bool: rows of ``image_feats`` that are finite and not all zero."""
    return torch.isfinite(image_feats).all(dim=1) & (image_feats != 0).any(dim=1)


def crossmodal_infonce(point_feats: torch.Tensor, image_feats: torch.Tensor, head3: nn.Module, head2: nn.Module,
                       temperature: float = TEMPERATURE, *, max_rows: int | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Symmetric InfoNCE between ``head3(point_feats [P, D3])`` and ``head2(image_feats [P, D2])``;
    row ``i`` of each is a pair. Unusable image rows (NaN/inf or all zero) are skipped; with
    ``max_rows``, at most that many usable rows are drawn (``generator``, on the CPU)."""
    if point_feats.ndim != 2 or image_feats.ndim != 2 or len(point_feats) != len(image_feats):
        raise PcalError(f"cross-modal loss: features must be [P, D3] and [P, D2] with the same P, got "
                        f"{tuple(point_feats.shape)} and {tuple(image_feats.shape)}")
    if not point_feats.is_floating_point() or not image_feats.is_floating_point():
        raise PcalError("cross-modal loss: features must be floating point")
    temperature = float(temperature)
    if not temperature > 0:
        raise PcalError(f"cross-modal loss: temperature must be > 0, got {temperature}")
    if max_rows is not None and (isinstance(max_rows, bool) or int(max_rows) < 2):
        raise PcalError(f"cross-modal loss: max_rows must be >= 2, got {max_rows!r}")
    image_feats = image_feats.detach().to(point_feats.device)
    rows = torch.nonzero(usable_rows(image_feats)).reshape(-1)
    if max_rows is not None and len(rows) > int(max_rows):
        pick = torch.randperm(len(rows), generator=generator)[:int(max_rows)]
        rows = rows[pick.to(rows.device)].sort().values
    if len(rows) < 2:
        return point_feats[:0].sum() * 0.0
    a = F.normalize(head3(point_feats[rows]), dim=1)
    b = F.normalize(head2(image_feats[rows].to(point_feats.dtype)), dim=1)
    if a.ndim != 2 or a.shape != b.shape:
        raise PcalError(f"cross-modal loss: the heads must map to one dimension, got {tuple(a.shape)} "
                        f"and {tuple(b.shape)}")
    sim = a @ b.T / temperature
    target = torch.arange(len(rows), device=sim.device)
    return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))


def read_point_features(path: str | Path, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """``(features [N, D] float32, seen [N] bool)`` from a user's ``.npy`` file (format above);
    rows of NaN (not seen by any image) become zeros with ``seen`` False."""
    path = Path(path)
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 0:
        raise PcalError(f"n_points must be an integer >= 0, got {n_points!r}")
    if path.suffix.lower() != ".npy":
        raise PcalError(f"{path}: point features must be a .npy file, got '{path.suffix}'")
    try:
        raw = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise PcalError(f"{path}: point features file not found") from None
    except IsADirectoryError:
        raise PcalError(f"{path}: is a directory, not a .npy file") from None
    except (OSError, ValueError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PcalError(f"{path}: not a readable .npy array ({first})") from None
    if not isinstance(raw, np.ndarray):
        raise PcalError(f"{path}: not a single .npy array")
    kind = raw.dtype.kind
    if kind not in "fiu" or raw.dtype.fields is not None:
        raise PcalError(f"{path}: point features must be real numbers, got dtype {raw.dtype}")
    if raw.ndim != 2 or raw.shape[1] < 1:
        raise PcalError(f"{path}: point features must be a 2-D array [N, D], got shape {raw.shape}")
    if raw.shape[0] != n_points:
        raise PcalError(f"{path}: {raw.shape[0]} feature rows but the scene has {n_points} points")
    with np.errstate(over="ignore", invalid="ignore"):
        feats = np.array(raw, dtype=np.float32)
    nan = np.isnan(feats)
    unseen = nan.all(axis=1)
    partial = nan.any(axis=1) & ~unseen
    if partial.any():
        row = int(np.flatnonzero(partial)[0])
        raise PcalError(f"{path}: row {row} has NaN in some columns only ({int(partial.sum())} such rows); "
                        f"a point seen by no image must be NaN in every column")
    feats[unseen] = 0.0
    if not np.isfinite(feats).all():
        row = int(np.flatnonzero(~np.isfinite(feats).all(axis=1))[0])
        raise PcalError(f"{path}: row {row} holds an infinite value (or one too large for float32)")
    return feats, ~unseen
