"""JoPro's density model of the decoder features: a RealNVP-style flow with a classifier on its latent.

:class:`FeatureFlow` maps a feature ``f`` (``[N, D]``, L2-normalised by the caller) to a latent
``z = g(f)`` with a standard normal base, so ``log p(f) = log N(z; 0, I) + log |det dg/df|``
exactly (change of variables). ``g`` is

1. a learned elementwise affine map ``(f + shift) * exp(log_scale)`` (ActNorm); :func:`fit_flow`
   initialises it once from the data (per-dimension mean and standard deviation, the latter floored
   at 1% of the mean std so that a near-constant coordinate gets no huge scale), which spares the
   coupling blocks from learning the ~10x scale-up that unit-norm 96-d features need;
2. ``blocks`` affine coupling blocks. Before each block the coordinates are reordered by a fixed
   permutation drawn from ``seed``: a fresh random shuffle before every even block, a swap of the two
   halves (each half shuffled) before every odd block. So every coordinate is transformed once in
   every pair of blocks, and the halves are re-mixed every pair. A block keeps its first ``n_cond``
   coordinates ``a`` and maps the rest ``b -> b * exp(s(a)) + t(a)``; ``s, t`` come from a small MLP
   (Linear, ReLU, Linear of width ``hidden``) whose last layer starts at zero, so a new flow only
   permutes the coordinates (its density is the standard normal). The log-scales are bounded,
   ``s = 2 tanh(s_raw / 2)`` (|s| < 2 per block), for stability.

:meth:`FeatureFlow.classify` is a linear classifier on ``z`` (the release used a small MLP with
batch norm; a linear head is enough on a flow latent and has no batch statistics to go stale).

:func:`fit_flow` trains flow and head on a seeded subsample of the pool (``max_samples`` rows) with
``density_weight * mean softplus(-log p(f) / D) + CE(classify(f), pseudo)``, the CE over rows with a
confident pseudo-label (``pseudo >= 0``). The softplus-bounded per-dimension likelihood is the
release's objective: it stops pushing once a feature is dense enough, so features on the unit
sphere (a set of zero volume) cannot drive the density to infinity. Everything is seeded: the same
flow, data and seed give the same parameters, bit for bit, on the same machine and thread count.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pcal_cli.errors import PcalError

#: Bound of the per-block log-scale: ``s = SCALE_BOUND * tanh(s_raw / SCALE_BOUND)``.
SCALE_BOUND = 2.0
#: ActNorm init: a coordinate's std is floored at this fraction of the mean std over coordinates.
STD_FLOOR = 0.01
_LOG_2PI = math.log(2 * math.pi)


def l2_normalise(features: np.ndarray | torch.Tensor, eps: float = 1e-12) -> np.ndarray | torch.Tensor:
    """Rows of ``features`` ``[N, D]`` scaled to unit length (zero rows stay zero); numpy in, numpy out."""
    if isinstance(features, torch.Tensor):
        return features / features.norm(dim=-1, keepdim=True).clamp_min(eps)
    features = np.asarray(features)
    if not np.issubdtype(features.dtype, np.floating):
        features = features.astype(np.float32)
    norm = np.linalg.norm(features, axis=-1, keepdims=True)
    return features / np.maximum(norm, eps).astype(features.dtype, copy=False)


def _seeded_linear(fan_in: int, fan_out: int, generator: torch.Generator, zero: bool = False) -> nn.Linear:
    """A Linear layer with PyTorch's default uniform init drawn from ``generator`` (or all zeros)."""
    layer = nn.Linear(fan_in, fan_out)
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        if zero:
            layer.weight.zero_()
            layer.bias.zero_()
        else:
            layer.weight.copy_(torch.rand(fan_out, fan_in, generator=generator) * 2 * bound - bound)
            layer.bias.copy_(torch.rand(fan_out, generator=generator) * 2 * bound - bound)
    return layer


class AffineCoupling(nn.Module):
    """Permute, then ``b -> b * exp(s(a)) + t(a)`` on the coordinates after the first ``n_cond``."""

    def __init__(self, perm: torch.Tensor, n_cond: int, hidden: int, generator: torch.Generator) -> None:
        super().__init__()
        dim = len(perm)
        self.n_cond = n_cond
        self.register_buffer("perm", perm.clone())
        self.net = nn.Sequential(
            _seeded_linear(n_cond, hidden, generator),
            nn.ReLU(),
            _seeded_linear(hidden, 2 * (dim - n_cond), generator, zero=True),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, log|det|)`` for rows ``x`` ``[N, D]``."""
        x = torch.index_select(x, 1, self.perm)
        a, b = x[:, :self.n_cond], x[:, self.n_cond:]
        s_raw, t = self.net(a).chunk(2, dim=1)
        s = SCALE_BOUND * torch.tanh(s_raw / SCALE_BOUND)
        return torch.cat([a, b * torch.exp(s) + t], dim=1), s.sum(dim=1)


def _block_permutations(dim: int, blocks: int, generator: torch.Generator) -> list[tuple[torch.Tensor, int]]:
    """``(perm, n_cond)`` per block: shuffle before even blocks, shuffled half swap before odd ones."""
    out = []
    n_cond = dim // 2
    for b in range(blocks):
        if b % 2 == 0:
            perm = torch.randperm(dim, generator=generator)
            n_cond = dim // 2
        else:  # the previous block's transformed half conditions this one, and vice versa
            cond = torch.randperm(n_cond, generator=generator)
            trans = n_cond + torch.randperm(dim - n_cond, generator=generator)
            perm = torch.cat([trans, cond])
            n_cond = dim - n_cond
        out.append((perm, n_cond))
    return out


class FeatureFlow(nn.Module):
    """Normalising flow on ``dim``-d features with a linear ``num_classes`` classifier on its latent.

    Parameters are drawn from ``seed`` (the global torch RNG is not touched). See the module
    docstring for the architecture.
    """

    def __init__(self, dim: int, num_classes: int, blocks: int = 8, hidden: int = 128, seed: int = 0) -> None:
        super().__init__()
        if int(dim) < 2:
            raise PcalError(f"the feature flow needs features of at least 2 dimensions, got {dim}")
        if int(num_classes) < 2:
            raise PcalError(f"the feature flow needs at least 2 classes, got {num_classes}")
        if int(blocks) < 1 or int(hidden) < 1:
            raise PcalError(f"the feature flow needs blocks >= 1 and hidden >= 1, got {blocks} and {hidden}")
        self.dim, self.num_classes = int(dim), int(num_classes)
        generator = torch.Generator().manual_seed(int(seed))
        self.shift = nn.Parameter(torch.zeros(self.dim))
        self.log_scale = nn.Parameter(torch.zeros(self.dim))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.couplings = nn.ModuleList(
            AffineCoupling(perm, n_cond, int(hidden), generator)
            for perm, n_cond in _block_permutations(self.dim, int(blocks), generator)
        )
        self.head = _seeded_linear(self.dim, self.num_classes, generator)

    def _check(self, f: torch.Tensor) -> torch.Tensor:
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise PcalError(f"the feature flow expects features [N, {self.dim}], got shape {tuple(f.shape)}")
        return f

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z [N, D], log p(f) [N])``: the latent and the exact log-density (nats)."""
        z = (self._check(f) + self.shift) * torch.exp(self.log_scale)
        logdet = self.log_scale.sum().expand(len(f))
        for coupling in self.couplings:
            z, ld = coupling(z)
            logdet = logdet + ld
        base = -0.5 * (z * z).sum(dim=1) - 0.5 * self.dim * _LOG_2PI
        return z, base + logdet

    def latent(self, f: torch.Tensor) -> torch.Tensor:
        """``z = g(f)`` ``[N, D]``."""
        return self(f)[0]

    def log_prob(self, f: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(f)`` ``[N]`` in nats (base log-density of ``z`` plus ``log |det dg/df|``)."""
        return self(f)[1]

    def classify(self, f: torch.Tensor) -> torch.Tensor:
        """Class logits ``[N, C]`` of the linear head on the latent ``z``."""
        return self.head(self.latent(f))

    def log_prob_and_logits(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(f) [N], logits [N, C])`` in one pass of the flow."""
        z, logp = self(f)
        return logp, self.head(z)

    @torch.no_grad()
    def initialise_from(self, f: torch.Tensor) -> None:
        """Set the ActNorm layer so that ``f``'s coordinates come out with mean 0 and std 1."""
        f = self._check(f).to(self.shift.dtype)
        self.shift.copy_(-f.mean(dim=0))
        std = f.std(dim=0, unbiased=False) if len(f) > 1 else torch.ones_like(self.shift)
        floor = max(float(std.mean()) * STD_FLOOR, 1e-8)  # near-constant coordinates: no huge scale-up
        self.log_scale.copy_(-torch.log(std.clamp_min(floor)))
        self.initialised.fill_(True)


def _as_tensor(x: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(dtype)
    return torch.as_tensor(np.asarray(x)).to(dtype)


def flow_loss(flow: FeatureFlow, f: torch.Tensor, pseudo: torch.Tensor,
              density_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, density term, CE term)`` of the JoPro flow objective on one batch."""
    logp, logits = flow.log_prob_and_logits(f)
    density = F.softplus(-logp / flow.dim).mean()
    known = pseudo >= 0
    ce = F.cross_entropy(logits[known], pseudo[known]) if bool(known.any()) else logits.sum() * 0
    return density_weight * density + ce, density, ce


def fit_flow(flow: FeatureFlow, features: np.ndarray | torch.Tensor, pseudo: np.ndarray | torch.Tensor,
             steps: int = 200, batch: int = 4096, lr: float = 1e-3, density_weight: float = 0.2,
             max_samples: int = 200_000, seed: int = 0) -> dict:
    """Train ``flow`` (in place) on ``features`` ``[N, D]`` (L2-normalised) and ``pseudo`` ``[N]``.

    ``pseudo`` holds confident pseudo-labels in ``0..C-1`` and -1 where the network is not
    confident. At most ``max_samples`` rows (a seeded random subset) are used; each of the ``steps``
    Adam steps draws ``batch`` of them with replacement (all of them when there are at most
    ``batch``). The ActNorm layer is initialised from the subsample on the flow's first fit only, so
    a flow kept across rounds keeps learning. Returns a summary: rows used, rows with a pseudo-label,
    mean total / density / CE loss over the first and the last 10% of the steps, and seconds.
    """
    if not isinstance(flow, FeatureFlow):
        raise PcalError(f"fit_flow needs a FeatureFlow, got {type(flow).__name__}")
    param = next(flow.parameters())
    f = _as_tensor(features, param.dtype)
    y = _as_tensor(pseudo, torch.int64)
    flow._check(f)
    if y.shape != (len(f),):
        raise PcalError(f"pseudo-labels must be [N] = [{len(f)}], got shape {tuple(y.shape)}")
    if len(f) == 0:
        raise PcalError("fit_flow: no features to fit")
    if len(y) and (int(y.min()) < -1 or int(y.max()) >= flow.num_classes):
        raise PcalError(f"pseudo-labels must be -1 or in 0..{flow.num_classes - 1}")
    if int(steps) < 0 or int(batch) < 1 or int(max_samples) < 1 or lr <= 0 or density_weight < 0:
        raise PcalError("fit_flow: steps >= 0, batch >= 1, max_samples >= 1, lr > 0 and density_weight >= 0")
    if not bool(torch.isfinite(f).all()):
        raise PcalError("fit_flow: the features hold NaN or infinite values")
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(int(seed))
    if len(f) > max_samples:
        keep = torch.randperm(len(f), generator=generator)[:int(max_samples)]
        f, y = f[keep], y[keep]
    f, y = f.to(param.device).contiguous(), y.to(param.device)
    if not bool(flow.initialised):
        flow.initialise_from(f)
    was_training = flow.training
    flow.train()
    optimiser = torch.optim.Adam(flow.parameters(), lr=lr)
    history = torch.zeros(int(steps), 3, dtype=torch.float64)
    full = len(f) <= batch
    for step in range(int(steps)):
        if full:
            fb, yb = f, y
        else:
            rows = torch.randint(len(f), (int(batch),), generator=generator).to(param.device)
            fb, yb = f[rows], y[rows]
        total, density, ce = flow_loss(flow, fb, yb, density_weight)
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
        optimiser.step()
        history[step] = torch.stack([total.detach(), density.detach(), ce.detach()]).double().cpu()
    flow.train(was_training)
    tail = max(1, int(steps) // 10)
    first, last = history[:tail].mean(0).tolist(), history[-tail:].mean(0).tolist()
    if int(steps) == 0:
        first = last = [float("nan")] * 3
    return {
        "samples": len(f), "labelled": int((y >= 0).sum()), "steps": int(steps),
        "loss_first": first[0], "loss_last": last[0], "density_first": first[1], "density_last": last[1],
        "ce_first": first[2], "ce_last": last[2], "seconds": time.perf_counter() - start,
    }
