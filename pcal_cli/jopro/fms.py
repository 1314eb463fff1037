"""JoPro's feature-mixing stability (FMS) score: low = uncertain = ask first.

For every point ``f`` (L2-normalised) and every present class ``k`` and draw ``m``, the mixture
``f' = (1 - a_mk) f + a_mk c_k`` is passed through the flow, giving ``S = draws x K`` mixtures
(65 with 13 classes and 5 draws). From them:

- ``P``: the mean relative density, ``mean_s exp(l_s - M)``, where ``l_s = log p(f'_s) / D`` is the
  per-dimension log-density (as in the release: a total log-density over 96 dimensions would make
  ``exp(l - M)`` vanish for nearly every point) and ``M`` is the scene's maximum of ``l`` over all
  its points' mixtures, so ``P`` is in ``(0, 1]``. The release normalised each mixture separately
  by its own scene maximum; one maximum per scene keeps a single scale and needs one pass;
- ``Q``: the mean posterior ``mean_s softmax(classify(f'_s))`` and its top two ``Q(1) >= Q(2)``;
- ``V``: the variance of the posteriors across the mixtures (population variance, divided by
  ``S``), averaged over the classes.

``score = P (Q(1) - Q(2)) - V``. Choices (and differences from the release):

- ``a_mk`` is drawn once per (draw, class) from ``alphas`` with a seeded generator and shared by all
  points (the release drew one per room, class and draw), so every point sees the same
  perturbations and scores differ only because the points do;
- the mixture is re-normalised to unit length (``renormalise=True``): the flow models unit-norm
  features, and a mixture pulled inside the sphere would otherwise lose density just by shrinking,
  not by moving to a rarer direction (the release did not re-normalise);
- absent classes (``present[k] = False``) are not mixed with; the release mixed towards a zero
  prototype;
- no per-scene shift of the score (the release subtracted each room's minimum, which changed
  nothing for its per-room budget; pcal's budget is global and ``P`` is already scene-relative).

Computation is in torch in chunks of ``batch`` flow rows (``batch // S`` points at a time);
the same inputs, seed and ``batch`` give the same scores, bit for bit, on one machine.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from pcal_cli.errors import PcalError
from pcal_cli.jopro.flow import FeatureFlow

#: The release's mixing coefficients: 0.01, 0.02, ..., 0.10.
DEFAULT_ALPHAS = tuple(round(0.01 * i, 2) for i in range(1, 11))


def mixing_table(num_present: int, alphas: tuple[float, ...] = DEFAULT_ALPHAS, draws: int = 5,
                 seed: int = 0) -> np.ndarray:
    """The coefficients ``a`` ``[draws, K]``: one seeded draw from ``alphas`` per (draw, class)."""
    generator = torch.Generator().manual_seed(int(seed))
    pick = torch.randint(len(alphas), (int(draws), int(num_present)), generator=generator)
    return np.asarray(alphas, dtype=np.float64)[pick.numpy()]


@torch.inference_mode()
def _chunk_stats(flow: FeatureFlow, f: torch.Tensor, keep: torch.Tensor, push: torch.Tensor,
                 renormalise: bool) -> tuple[torch.Tensor, ...]:
    """Per point of ``f`` ``[B, D]``: (log-mean-exp of l, max of l, margin of Q, V) over the mixtures."""
    b, d = f.shape
    s = len(keep)
    mixed = f[:, None, :] * keep[None, :, None] + push[None, :, :]  # [B, S, D]
    if renormalise:
        mixed = mixed / mixed.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    logp, logits = flow.log_prob_and_logits(mixed.reshape(b * s, d))
    ell = (logp / d).reshape(b, s)
    q = torch.softmax(logits.reshape(b, s, -1), dim=-1)
    mean_q = q.mean(dim=1)
    top2 = mean_q.topk(2, dim=1).values
    var = q.var(dim=1, unbiased=False).mean(dim=1)
    lme = torch.logsumexp(ell, dim=1) - math.log(s)
    return lme, ell.max(dim=1).values, top2[:, 0] - top2[:, 1], var


def fms_scores(flow: FeatureFlow, features: np.ndarray | torch.Tensor, protos: np.ndarray, present: np.ndarray,
               scene_of: np.ndarray | None = None, alphas: tuple[float, ...] = DEFAULT_ALPHAS, draws: int = 5,
               seed: int = 0, batch: int = 65536, device: str | torch.device = "cpu",
               renormalise: bool = True) -> np.ndarray:
    """Feature-mixing stability ``[N]`` (float64) of ``features`` ``[N, D]``; lowest = ask first.

    ``protos`` ``[C, D]`` and ``present`` ``[C]`` come from :func:`class_prototypes`; ``scene_of``
    ``[N]`` groups the points for the relative density (``None``: one scene). ``batch`` is the number
    of mixtures per flow call. The flow is used in eval mode on ``device`` (a copy when it lives
    elsewhere); the caller's flow is not changed. See the module docstring.
    """
    if not isinstance(flow, FeatureFlow):
        raise PcalError(f"fms_scores needs a FeatureFlow, got {type(flow).__name__}")
    feats = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    protos, present = np.asarray(protos), np.asarray(present)
    if feats.ndim != 2 or feats.shape[1] != flow.dim:
        raise PcalError(f"fms_scores: features must be [N, {flow.dim}], got shape {feats.shape}")
    if protos.ndim != 2 or protos.shape[1] != flow.dim or present.shape != (len(protos),):
        raise PcalError(f"fms_scores: prototypes must be [C, {flow.dim}] with present [C], "
                        f"got {protos.shape} and {present.shape}")
    if present.dtype != np.bool_:
        raise PcalError("fms_scores: present must be a boolean array")
    if not present.any():
        raise PcalError("fms_scores: no class prototype is present (nothing labelled or predicted?)")
    if int(draws) < 1 or len(alphas) == 0 or int(batch) < 1:
        raise PcalError("fms_scores: draws >= 1, batch >= 1 and at least one alpha are needed")
    if not all(0 <= a <= 1 for a in alphas):
        raise PcalError(f"fms_scores: mixing coefficients must be in [0, 1], got {alphas}")
    n = len(feats)
    if scene_of is None:
        scene_codes = np.zeros(n, dtype=np.int64)
    else:
        scene_of = np.asarray(scene_of)
        if scene_of.shape != (n,):
            raise PcalError(f"fms_scores: {n} features but scene ids of shape {scene_of.shape}")
        scene_codes = np.unique(scene_of, return_inverse=True)[1].reshape(n)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    if not np.isfinite(feats).all():
        raise PcalError("fms_scores: the features hold NaN or infinite values")

    device = torch.device(device)
    model = flow if next(flow.parameters()).device == device else copy.deepcopy(flow).to(device)
    was_training = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    table = mixing_table(int(present.sum()), tuple(alphas), int(draws), seed)  # [draws, K]
    anchors = protos[present].astype(np.float64)  # [K, D]
    a = table.reshape(-1)  # mixture s = (draw m, class k), k fastest
    push = a[:, None] * np.tile(anchors, (int(draws), 1))
    keep_t = torch.as_tensor(1 - a, dtype=dtype, device=device)
    push_t = torch.as_tensor(push, dtype=dtype, device=device)
    per_chunk = max(1, int(batch) // len(a))
    out = np.empty((4, n), dtype=np.float64)
    try:
        for start in range(0, n, per_chunk):
            f = torch.as_tensor(feats[start:start + per_chunk], device=device).to(dtype)
            stats = _chunk_stats(model, f, keep_t, push_t, renormalise)
            out[:, start:start + len(f)] = torch.stack(stats).double().cpu().numpy()
    finally:
        model.train(was_training)
    lme, mx, margin, var = out
    scene_max = np.full(scene_codes.max() + 1, -np.inf)
    np.maximum.at(scene_max, scene_codes, mx)
    density = np.exp(lme - scene_max[scene_codes])
    return density * margin - var
