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

**In training** (``--image-features DIR`` with the scene-tag recipes): ``DIR/<scene>.npy`` for
every tagged training scene (:class:`ImageFeatures`: checked once, then memory-mapped, only the
rows a step needs are read). In each step, for each scene of the batch, the student view's voxels
that hold at least one seen point are the candidates; up to :data:`MAX_PAIRS` (512) of them are
drawn at random; a voxel's image feature is the mean of its seen points' rows (the voxelisation of
the 3D input), its 3D feature the network's decoder output there. The loss added is
:data:`WEIGHT` (0.05) times the sum over the batch's scenes of :func:`crossmodal_infonce`
(:func:`crossmodal_batch_loss`, as the release sums over scenes). The heads
(:class:`CrossModalHeads`) are trained alongside the network and kept in the checkpoint as
``crossmodal``; without image features nothing of this runs.

Differences from the release: it trains its 2D network (ResNet-50) jointly and maps each modality
into the other's space with one linear layer (96 -> 2048 and 2048 -> 96), contrasting against the
stop-gradient features of the other modality in each direction. pcal's 2D features are fixed, so a
2D -> 3D direction against stop-gradient 3D features would train nothing but its head; instead both
modalities are projected into one shared space (:class:`ProjectionHead`, a small MLP, default 128
dimensions) and the point features receive gradient from both directions (CLIP-style). The release pairs
points (sampled per view, bilinear 2D features); pcal pairs voxels (the network's outputs are per
voxel, and a voxel's points share one 3D feature), with the image rows averaged per voxel. The
release ramps the cross-modal weight from 0 over its first 2400 stage-1 iterations together with
the scene-tag loss, which only scales the whole loss (a learning-rate warm-up, which pcal's
schedule already has); pcal uses 0.05 from the first step.
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
#: WSegPC's weight of the cross-modal terms.
WEIGHT = 0.05


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


def _open_point_features(path: Path, n_points: int | None) -> np.ndarray:
    """The array of a user's ``.npy`` file, memory-mapped, after the header checks (suffix, dtype,
    ``[N, D]`` with ``N = n_points`` when given)."""
    if n_points is not None and (isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer))
                                 or n_points < 0):
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
    if raw.dtype.kind not in "fiu" or raw.dtype.fields is not None:
        raise PcalError(f"{path}: point features must be real numbers, got dtype {raw.dtype}")
    if raw.ndim != 2 or raw.shape[1] < 1:
        raise PcalError(f"{path}: point features must be a 2-D array [N, D], got shape {raw.shape}")
    if n_points is not None and raw.shape[0] != n_points:
        raise PcalError(f"{path}: {raw.shape[0]} feature rows but the scene has {n_points} points")
    return raw


def _as_float32(block: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.array(block, dtype=np.float32)


def _unseen_rows(feats: np.ndarray, path: Path, first_row: int = 0) -> np.ndarray:
    """``[n]`` bool: the all-NaN rows of a float32 block (rows ``first_row`` on of the file);
    a row with NaN in some columns only, or an infinity, is refused."""
    nan = np.isnan(feats)
    unseen = nan.all(axis=1)
    partial = nan.any(axis=1) & ~unseen
    if partial.any():
        row = first_row + int(np.flatnonzero(partial)[0])
        raise PcalError(f"{path}: row {row} has NaN in some columns only ({int(partial.sum())} such rows); "
                        f"a point seen by no image must be NaN in every column")
    bad = ~np.isfinite(feats).all(axis=1) & ~unseen
    if bad.any():
        row = first_row + int(np.flatnonzero(bad)[0])
        raise PcalError(f"{path}: row {row} holds an infinite value (or one too large for float32)")
    return unseen


def read_point_features(path: str | Path, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """``(features [N, D] float32, seen [N] bool)`` from a user's ``.npy`` file (format above);
    rows of NaN (not seen by any image) become zeros with ``seen`` False."""
    path = Path(path)
    feats = _as_float32(_open_point_features(path, n_points))
    unseen = _unseen_rows(feats, path)
    feats[unseen] = 0.0
    return feats, ~unseen


class ImageFeatures:
    """A folder of per-scene 2D features for training: ``DIR/<scene>.npy``, one file per training
    scene in the format of :func:`read_point_features`, every file with the same ``D``.

    Files are memory-mapped, never loaded whole: :meth:`check` reads each file once in blocks of
    :data:`BLOCK_ROWS` rows (format, row count, finite values) and keeps which points are seen;
    :meth:`rows` reads only the rows a training step asks for.
    """

    #: Rows read at a time by :meth:`check`.
    BLOCK_ROWS = 1 << 16

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise PcalError(f"image features: {self.folder} is not a folder")
        self._arrays: dict[str, np.ndarray] = {}
        self._seen: dict[str, np.ndarray] = {}
        self._dim: int | None = None

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.npy"

    @property
    def dim(self) -> int:
        """``D``, from the first ``.npy`` file of the folder (by name) unless a scene was opened."""
        if self._dim is None:
            files = sorted(p for p in self.folder.glob("*.npy") if p.is_file())
            if not files:
                raise PcalError(f"image features: {self.folder} holds no <scene>.npy file")
            self._dim = int(_open_point_features(files[0], None).shape[1])
        return self._dim

    def _open(self, name: str, n_points: int) -> np.ndarray:
        if name not in self._arrays:
            path = self.path(name)
            if not path.is_file():
                raise PcalError(f"image features: no {path.name} in {self.folder} for training scene '{name}'")
            raw = _open_point_features(path, n_points)
            if raw.shape[1] != self.dim:
                raise PcalError(f"image features: {path} has {raw.shape[1]} columns, other scenes {self.dim}")
            self._arrays[name] = raw
        return self._arrays[name]

    def check(self, scenes: list[tuple[str, int]], values: bool = True) -> None:
        """Every ``(name, number of points)`` has a file of the right shape (and, with ``values``,
        the right content: whole-NaN or finite rows); raises a one-line :class:`PcalError`."""
        for name, n_points in scenes:
            raw = self._open(name, int(n_points))
            if not values or name in self._seen:
                continue
            seen = np.empty(len(raw), dtype=bool)
            for start in range(0, len(raw), self.BLOCK_ROWS):
                block = _as_float32(raw[start:start + self.BLOCK_ROWS])
                seen[start:start + len(block)] = ~_unseen_rows(block, self.path(name), start)
            self._seen[name] = seen

    def seen(self, name: str) -> np.ndarray:
        """``[N]`` bool: the points of scene ``name`` seen by some image (after :meth:`check`)."""
        if name not in self._seen:
            raise PcalError(f"image features: scene '{name}' was not checked")
        return self._seen[name]

    def rows(self, name: str, index: np.ndarray) -> np.ndarray:
        """``[len(index), D]`` float32: the rows ``index`` of scene ``name`` (unseen rows as 0)."""
        raw = self._arrays.get(name)
        if raw is None:
            raise PcalError(f"image features: scene '{name}' was not checked")
        index = np.asarray(index, dtype=np.int64)
        order = np.argsort(index, kind="stable")
        feats = np.empty((len(index), raw.shape[1]), dtype=np.float32)
        feats[order] = _as_float32(raw[index[order]])
        feats[np.isnan(feats).all(axis=1)] = 0.0
        return feats


class CrossModalHeads(nn.Module):
    """The two projection heads of cross-modal guidance (3D features and image features into one
    ``out_dim`` space) with their own optimiser, so the network's optimiser stays as it is.

    The heads follow the network's optimiser: the same kind (``adamw``, or ``sgd`` with Nesterov
    momentum 0.9) and weight decay, and :meth:`step` takes the network's current learning rate.
    :meth:`state_dict` holds the heads' weights and the optimiser's state as tensors
    (``optimizer.<parameter>.<name>``), so a partial checkpoint resumes exactly;
    :meth:`load_state_dict` restores the optimiser's state only when asked (a resume, not a warm
    start).
    """

    OPTIMIZER_PREFIX = "optimizer."

    def __init__(self, point_dim: int, image_dim: int, *, out_dim: int = 128, optimizer: str = "adamw",
                 weight_decay: float = 1e-4) -> None:
        super().__init__()
        self.point_dim, self.image_dim = int(point_dim), int(image_dim)
        self.head3 = ProjectionHead(point_dim, out_dim)
        self.head2 = ProjectionHead(image_dim, out_dim)
        self.optimizer_kind, self.weight_decay = optimizer, float(weight_decay)
        self.optimizer: torch.optim.Optimizer | None = None

    def _make_optimizer(self) -> torch.optim.Optimizer:
        if self.optimizer is None:  # built on first use: after the module has moved to its device
            params = list(self.parameters())
            if self.optimizer_kind == "sgd":
                self.optimizer = torch.optim.SGD(params, lr=0.0, momentum=0.9, nesterov=True,
                                                 weight_decay=self.weight_decay)
            else:
                self.optimizer = torch.optim.AdamW(params, lr=0.0, weight_decay=self.weight_decay)
        return self.optimizer

    def loss(self, point_feats: torch.Tensor, image_feats: torch.Tensor,
             temperature: float = TEMPERATURE) -> torch.Tensor:
        """:func:`crossmodal_infonce` through these heads."""
        return crossmodal_infonce(point_feats, image_feats, self.head3, self.head2, temperature)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._make_optimizer().zero_grad(set_to_none=set_to_none)

    def step(self, lr: float) -> None:
        """One optimiser step of the heads at learning rate ``lr``."""
        optimizer = self._make_optimizer()
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        optimizer.step()

    def state_dict(self, *args, **kwargs):
        out = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        if self.optimizer is not None:
            for position, param in enumerate(self.parameters()):
                for name, value in self.optimizer.state.get(param, {}).items():
                    if isinstance(value, torch.Tensor):
                        out[f"{prefix}{self.OPTIMIZER_PREFIX}{position}.{name}"] = value.detach()
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False, *, optimizer: bool = True):
        weights = {k: v for k, v in state_dict.items() if not k.startswith(self.OPTIMIZER_PREFIX)}
        for key, value in weights.items():
            own = dict(self.named_parameters()).get(key)
            if own is not None and tuple(value.shape) != tuple(own.shape):
                raise PcalError(f"cross-modal heads: the checkpoint's heads map {self._dims(weights)}, these map "
                                f"{self.point_dim} and {self.image_dim} dimensions (other image features?)")
        result = super().load_state_dict(weights, strict=strict, assign=assign)
        opt = self._make_optimizer()
        opt.state.clear()
        if optimizer:
            params = list(self.parameters())
            for key, value in state_dict.items():
                if not key.startswith(self.OPTIMIZER_PREFIX):
                    continue
                position, name = key[len(self.OPTIMIZER_PREFIX):].split(".", 1)
                param = params[int(position)]
                # AdamW keeps its step count on the CPU (not capturable); moments live with the parameter
                value = value.to("cpu").clone() if name == "step" else value.to(param.device, param.dtype).clone()
                opt.state[param][name] = value
        return result

    @staticmethod
    def _dims(weights: dict) -> str:
        first = [weights.get(f"head{k}.net.0.weight") for k in (3, 2)]
        return " and ".join(str(w.shape[1]) if w is not None else "?" for w in first)


def pool_to_voxels(image_rows: np.ndarray, slot: np.ndarray, voxels: int) -> np.ndarray:
    """``[voxels, D]`` float32: the mean of ``image_rows [P, D]`` per voxel ``slot [P]`` (0..voxels-1);
    a voxel without a row gets zeros."""
    sums = np.zeros((voxels, image_rows.shape[1]), dtype=np.float64)
    np.add.at(sums, slot, image_rows)
    counts = np.bincount(slot, minlength=voxels)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def crossmodal_batch_loss(point_feats: torch.Tensor, items: list, parts: list, image_features: ImageFeatures,
                          heads: CrossModalHeads, generator: torch.Generator,
                          max_voxels: int = MAX_PAIRS) -> torch.Tensor:
    """Cross-modal guidance for one training batch: the sum over its scenes of the symmetric
    InfoNCE (:meth:`CrossModalHeads.loss`) between the 3D features and the image features of up to
    ``max_voxels`` voxels seen by some image, drawn at random (``generator``).

    ``point_feats [sum N_b, F]``: the network's features per point of the batch (scene after
    scene); ``items``: the voxelised views (their ``inverse`` maps points to voxels); ``parts``:
    the points of each view as :class:`~pcal_cli.weak.views.IndexedScene` (scene ``name`` and
    ``point_index``, the rows of the image features). A voxel's image feature is the mean of its
    seen points' rows (the same voxelisation as the 3D input); its 3D feature is the network's
    output at that voxel. A scene with fewer than 2 seen voxels adds an exact 0.
    """
    total = point_feats[:0].sum() * 0.0
    start = 0
    for item, part in zip(items, parts):
        inverse = np.asarray(item.inverse, dtype=np.int64)
        count = len(inverse)
        if count:
            voxels = int(inverse.max()) + 1
            seen = image_features.seen(part.name)[part.point_index]
            chosen = np.flatnonzero(np.bincount(inverse[seen], minlength=voxels) > 0)
            if len(chosen) > max_voxels:
                pick = torch.randperm(len(chosen), generator=generator)[:max_voxels].numpy()
                chosen = np.sort(chosen[pick])
            if len(chosen) >= 2:
                slot = np.full(voxels, -1, dtype=np.int64)
                slot[chosen] = np.arange(len(chosen))
                points = np.flatnonzero(seen & (slot[inverse] >= 0))
                rows = image_features.rows(part.name, part.point_index[points])
                pooled = pool_to_voxels(rows, slot[inverse[points]], len(chosen))
                _, first = np.unique(inverse, return_index=True)  # a point of each voxel (0..voxels-1)
                where = torch.from_numpy(start + first[chosen]).to(point_feats.device)
                total = total + heads.loss(point_feats[where], torch.from_numpy(pooled).to(point_feats.device))
        start += count
    return total
