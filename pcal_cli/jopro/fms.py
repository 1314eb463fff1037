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

Computation is in torch in chunks of ``batch`` flow rows (``batch // S`` points at a time; the
default 2048 keeps a chunk's working arrays in cache), through :class:`_FoldedFlow`, the flow's
inference with its permutations folded into the weights (the same ``log p`` and logits as
:meth:`FeatureFlow.log_prob_and_logits` up to float rounding). A (coefficient, class) pair drawn
more than once is the same mixture: it goes through the flow once and is weighted by its count
(with 5 draws of 10 coefficients about 18 % of the mixtures are repeats). The same inputs, seed
and ``batch`` give the same scores, bit for bit, on one machine and thread count. One busy CPU
thread scores 2.7k to 3.5k points/s (65 mixtures per point, 96-d features, 8 blocks of width 128;
1.0k to 1.2k before these changes), see ``docs/acquisition.md``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from pcal_cli.errors import PcalError
from pcal_cli.jopro.flow import SCALE_BOUND, FeatureFlow

_LOG_2PI = math.log(2 * math.pi)

#: The release's mixing coefficients: 0.01, 0.02, ..., 0.10.
DEFAULT_ALPHAS = tuple(round(0.01 * i, 2) for i in range(1, 11))


def mixing_table(num_present: int, alphas: tuple[float, ...] = DEFAULT_ALPHAS, draws: int = 5,
                 seed: int = 0) -> np.ndarray:
    """The coefficients ``a`` ``[draws, K]``: one seeded draw from ``alphas`` per (draw, class)."""
    generator = torch.Generator().manual_seed(int(seed))
    pick = torch.randint(len(alphas), (int(draws), int(num_present)), generator=generator)
    return np.asarray(alphas, dtype=np.float64)[pick.numpy()]


class _FoldedFlow:
    """Inference of a :class:`FeatureFlow` (``log p`` and logits) with the data movement taken out.

    The working array is feature-major, ``[D, R]`` (one column per row of the flow), so both halves
    of a block are contiguous row ranges and the matrix products write ``s`` and ``t`` as contiguous
    blocks. The features are mixed directly in block 0's order, and whenever a block's two halves
    are already the two row ranges ``[0, k)`` and ``[k, D)`` (at every odd block, whose permutation
    swaps the previous halves and shuffles within each) the within-half shuffles are folded into
    the columns of the block's first layer and the rows of its last layer, and the final order into
    the classifier's columns. Only the fresh shuffles of the even blocks after the first move data
    (one row gather each). ``tanh`` is evaluated as ``2 sigmoid(2 x) - 1`` (faster on CPU). The
    arithmetic is the flow's up to float rounding (sums in other orders).
    """

    def __init__(self, flow: FeatureFlow) -> None:
        d = flow.dim
        self.dim = d
        self.bound = float(SCALE_BOUND)
        device = flow.shift.device
        couplings = list(flow.couplings)
        self.input_order = couplings[0].perm.clone()  # the first block's order: built in directly
        scale = torch.exp(flow.log_scale.detach())
        self.input_scale = scale[self.input_order][:, None]
        self.input_shift = (flow.shift.detach()[self.input_order] * scale[self.input_order])[:, None]
        self.logdet = flow.log_scale.detach().sum()
        col = torch.argsort(self.input_order)  # col[c]: the row of the array holding the flow's coordinate c
        split = couplings[0].n_cond  # the two ranges: [0, split) and [split, D)
        self.steps: list[tuple] = []
        for index, coupling in enumerate(couplings):
            n = coupling.n_cond
            m = d - n
            cols = torch.arange(d, device=device) if index == 0 else col[coupling.perm]  # row of each position
            cond, trans = cols[:n], cols[n:]
            in_place = ((n == split and int(cond.min()) == 0 and int(cond.max()) == n - 1)
                        or (m == split and int(trans.min()) == 0 and int(trans.max()) == m - 1))
            if not in_place:
                self.steps.append(("gather", cols.clone()))
                cols = torch.arange(d, device=device)
                cond, trans = cols[:n], cols[n:]
                split = n
            c0, t0 = int(cond.min()), int(trans.min())
            first, last = coupling.net[0], coupling.net[2]
            pos_a, pos_b = torch.argsort(cond), torch.argsort(trans)  # position held by each row of a range
            rows = torch.cat([pos_b, m + pos_b])
            # s, t = 2 bound sigmoid(2 raw / bound) - bound, t: the 2 / bound is folded into the s rows
            fold = torch.cat([torch.full((m,), 2.0 / self.bound), torch.ones(m)]).to(last.weight)
            self.steps.append(("couple", c0, n, t0, m, first.weight.detach()[:, pos_a].contiguous(),
                               first.bias.detach()[:, None].contiguous(),
                               (last.weight.detach()[rows] * fold[:, None]).contiguous(),
                               (last.bias.detach()[rows] * fold)[:, None].contiguous()))
            col = cols
        head = flow.head.weight.detach()
        self.head = torch.empty_like(head)
        self.head[:, col] = head
        self.head_bias = flow.head.bias.detach()[:, None].contiguous()

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p [R], logits [C, R])`` of the columns of ``x`` ``[D, R]`` (rows in
        ``input_order``, already scaled and shifted by the ActNorm: ``input_scale``,
        ``input_shift``). ``x`` is overwritten."""
        logdet = self.logdet.expand(x.shape[1]).clone()
        for step in self.steps:
            if step[0] == "gather":
                x = torch.index_select(x, 0, step[1])
                continue
            _, c0, n, t0, m, w1, b1, w2, b2 = step
            hidden = torch.addmm(b1, w1, x[c0:c0 + n]).relu_()
            st = torch.addmm(b2, w2, hidden)
            s = st[:m].sigmoid_().mul_(2.0 * self.bound).sub_(self.bound)
            logdet += s.sum(dim=0)
            x[t0:t0 + m].mul_(s.exp_()).add_(st[m:])
        base = -0.5 * torch.einsum("ij,ij->j", x, x) - 0.5 * self.dim * _LOG_2PI
        return base + logdet, torch.addmm(self.head_bias, self.head, x)


@torch.inference_mode()
def _chunk_stats(flow: _FoldedFlow, f: torch.Tensor, keep: torch.Tensor, push: torch.Tensor, weight: torch.Tensor,
                 renormalise: bool) -> tuple[torch.Tensor, ...]:
    """Per point of ``f`` ``[D, B]`` (feature-major, rows in the flow's input order): (log-mean-exp
    of l, max of l, margin of Q, V) over the distinct mixtures ``keep[s] f + push[:, s]`` (``push``
    ``[D, S]``), mixture ``s`` counted with ``weight[s]`` (the weights sum to 1)."""
    d, b = f.shape
    s = len(keep)
    mixed = f[:, :, None] * keep[None, None, :] + push[:, None, :]  # [D, B, S]
    if renormalise:
        mixed /= torch.linalg.vector_norm(mixed, dim=0, keepdim=True).clamp_min_(1e-12)
    mixed *= flow.input_scale[:, :, None]  # the ActNorm, (x + shift) * scale = x * scale + shift * scale
    mixed += flow.input_shift[:, :, None]
    logp, logits = flow(mixed.reshape(d, b * s))
    ell = (logp / d).reshape(b, s)
    q = torch.softmax(logits.reshape(-1, b, s), dim=0)  # [C, B, S]
    mean_q = q @ weight  # [C, B]
    top2 = mean_q.topk(2, dim=0).values
    var = (q - mean_q[:, :, None]).square_() @ weight  # population variance over the mixtures
    lme = torch.logsumexp(ell + weight.log(), dim=1)
    return lme, ell.max(dim=1).values, top2[0] - top2[1], var.mean(dim=0)


def fms_scores(flow: FeatureFlow, features: np.ndarray | torch.Tensor, protos: np.ndarray, present: np.ndarray,
               scene_of: np.ndarray | None = None, alphas: tuple[float, ...] = DEFAULT_ALPHAS, draws: int = 5,
               seed: int = 0, batch: int = 2048, device: str | torch.device = "cpu",
               renormalise: bool = True) -> np.ndarray:
    """Feature-mixing stability ``[N]`` (float64) of ``features`` ``[N, D]``; lowest = ask first.

    ``protos`` ``[C, D]`` and ``present`` ``[C]`` come from :func:`class_prototypes`; ``scene_of``
    ``[N]`` groups the points for the relative density (``None``: one scene). ``batch`` is the number
    of mixtures per flow call (at least one point's worth). The flow is used in eval mode on
    ``device`` (a copy when it lives elsewhere); the caller's flow is not changed. See the module
    docstring.
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
    # mixture s = (draw m, class k); a (coefficient, class) pair drawn twice is the same mixture:
    # it is passed through the flow once and counts twice (5 draws of 10 coefficients: ~18% fewer)
    drawn = np.stack([table.reshape(-1), np.tile(np.arange(table.shape[1]), table.shape[0])], axis=1)
    distinct, count = np.unique(drawn, axis=0, return_counts=True)
    a, k = distinct[:, 0], distinct[:, 1].astype(np.int64)
    push = a[:, None] * anchors[k]
    keep_t = torch.as_tensor(1 - a, dtype=dtype, device=device)
    weight_t = torch.as_tensor(count / count.sum(), dtype=dtype, device=device)
    per_chunk = max(1, int(batch) // len(a))
    out = np.empty((4, n), dtype=np.float64)
    try:
        with torch.inference_mode():
            folded = _FoldedFlow(model)
            order = folded.input_order.to(device)
            push_t = torch.as_tensor(push, dtype=dtype, device=device)[:, order].t().contiguous()
            for start in range(0, n, per_chunk):
                f = torch.as_tensor(feats[start:start + per_chunk], device=device).to(dtype)[:, order].t()
                stats = _chunk_stats(folded, f, keep_t, push_t, weight_t, renormalise)
                out[:, start:start + f.shape[1]] = torch.stack(stats).double().cpu().numpy()
    finally:
        model.train(was_training)
    lme, mx, margin, var = out
    scene_max = np.full(scene_codes.max() + 1, -np.inf)
    np.maximum.at(scene_max, scene_codes, mx)
    density = np.exp(lme - scene_max[scene_codes])
    return density * margin - var
