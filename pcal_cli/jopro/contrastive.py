"""JoPro's cluster-aware hybrid contrastive regulariser (teacher-student training), in torch.

Per batch of points with student features ``s``, EMA-teacher features ``t`` and teacher
probabilities, the *confident* points are those whose teacher max probability is ``>= conf``; their
pseudo-label is the teacher's argmax. All similarities are cosines (features are L2-normalised here)
divided by ``temperature``. Three terms, each a mean over the points it covers:

- **alignment**: ``1 - cos(s_i, t_i)`` over the confident points (the release: the plain L2
  distance ``|s_i - t_i|`` over every point);
- **point InfoNCE**: up to ``keys`` confident points are sampled (seeded) as anchors; anchor ``i``
  (student feature) is contrasted against the teacher features of the sampled points: its positive
  is one other sampled point with the same pseudo-label (drawn at random), its negatives every
  sampled point with another pseudo-label; anchors with no such partner are skipped (the release:
  3000 keys with replacement, every same-label key a positive, dot products divided by 5);
- **sub-prototype InfoNCE**: each confident point's target is the sub-prototype of its pseudo-class
  nearest to its *teacher* feature; the student feature is contrasted against all sub-prototypes of
  all classes (cross-entropy, the release used temperature 1). Sub-prototypes that are all zero
  (never initialised) are left out, and so are points of a class without any.

Gradients reach the student features only: teacher features, probabilities and sub-prototypes are
detached. With no confident point the loss is an exact zero still attached to the student's graph.
The loss weights are not published; defaults ``w_align = w_point = w_proto = 0.1`` are a starting
point to sweep.

:class:`SubPrototypes` holds ``K`` unit-length centres per class (``centres [C, K, D]``, buffers, so
``state_dict()`` is plain tensors for a weights-only checkpoint). :meth:`SubPrototypes.update` runs
a few spherical k-means steps (farthest-first start from a seeded random point) on a class's
confident teacher features, matches the new
centres one-to-one to the stored ones (Hungarian on cosine: each new centre to its nearest stored
centre without two sharing one), and moves the stored ones by EMA ``c <- m c + (1 - m) new``
(re-normalised). A class's first update sets its centres directly. The release's equal-partition
(Sinkhorn) assignment never ran because of a bug, reducing to nearest-centre assignment; pcal uses
nearest-centre assignment on purpose.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.nn import functional as F

from pcal_cli.errors import PcalError

PART_NAMES = ("align", "point", "proto")


def _check_inputs(student: torch.Tensor, teacher: torch.Tensor, probs: torch.Tensor) -> None:
    if student.ndim != 2 or teacher.shape != student.shape:
        raise PcalError(f"contrastive loss: student and teacher features must both be [P, D], "
                        f"got {tuple(student.shape)} and {tuple(teacher.shape)}")
    if probs.ndim != 2 or len(probs) != len(student) or probs.shape[1] < 1:
        raise PcalError(f"contrastive loss: teacher probabilities must be [{len(student)}, C], "
                        f"got {tuple(probs.shape)}")


def _point_infonce(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, temperature: float, keys: int,
                   generator: torch.Generator) -> torch.Tensor | None:
    """Point-level InfoNCE over a sample of confident points; None when no anchor has a positive."""
    n = len(s)
    sample = torch.randperm(n, generator=generator)[:min(int(keys), n)].to(s.device)
    m = len(sample)
    sa, tk, ya = s[sample], t[sample], y[sample]
    logits = sa @ tk.T / temperature  # [M, M]
    same = ya[:, None] == ya[None, :]
    eye = torch.eye(m, dtype=torch.bool, device=s.device)
    partner = same & ~eye
    has_pos = partner.any(dim=1)
    if not bool(has_pos.any()):
        return None
    draw = torch.rand(m, m, generator=generator).to(s.device).masked_fill(~partner, -1.0)
    pos = draw.argmax(dim=1)
    use = ~same
    use[torch.arange(m, device=s.device), pos] = True
    per_anchor = torch.logsumexp(logits.masked_fill(~use, float("-inf")), dim=1) - logits.gather(1, pos[:, None])[:, 0]
    return per_anchor[has_pos].mean()


def _proto_infonce(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, subprotos: torch.Tensor,
                   temperature: float) -> torch.Tensor | None:
    """Sub-prototype InfoNCE; None when no confident point has a sub-prototype of its class."""
    c, k, d = subprotos.shape
    flat = subprotos.reshape(c * k, d).to(s.dtype)
    valid = flat.norm(dim=1) > 1e-12
    owner = torch.arange(c, device=s.device).repeat_interleave(k)
    ok = valid.reshape(c, k).any(dim=1)[y]
    if not bool(ok.any()):
        return None
    s, t, y = s[ok], t[ok], y[ok]
    anchors = F.normalize(flat, dim=1)
    own = (owner[None, :] == y[:, None]) & valid[None, :]
    target = (t @ anchors.T).masked_fill(~own, float("-inf")).argmax(dim=1)
    logits = (s @ anchors.T / temperature).masked_fill(~valid[None, :], float("-inf"))
    return F.cross_entropy(logits, target)


def hybrid_contrastive_loss(student_feats: torch.Tensor, teacher_feats: torch.Tensor, teacher_probs: torch.Tensor,
                            subprotos: torch.Tensor, *, conf: float = 0.8, temperature: float = 0.1,
                            keys: int = 256, w_align: float = 0.1, w_point: float = 0.1, w_proto: float = 0.1,
                            generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """``(loss, parts)``: the weighted sum of the three terms and each unweighted term as a float.

    ``student_feats`` / ``teacher_feats`` ``[P, D]``, ``teacher_probs`` ``[P, C]``, ``subprotos``
    ``[C, K, D]`` (e.g. :attr:`SubPrototypes.centres`); ``generator`` (a CPU torch generator, default
    seeded 0) draws the anchors and positives. Also reports ``confident``, the number of confident
    points. See the module docstring.
    """
    _check_inputs(student_feats, teacher_feats, teacher_probs)
    c, d = teacher_probs.shape[1], student_feats.shape[1]
    if subprotos.ndim != 3 or subprotos.shape[0] != c or subprotos.shape[2] != d:
        raise PcalError(f"contrastive loss: sub-prototypes must be [{c}, K, {d}], got {tuple(subprotos.shape)}")
    if temperature <= 0 or int(keys) < 2:
        raise PcalError(f"contrastive loss: temperature > 0 and keys >= 2, got {temperature} and {keys}")
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    maxp, pseudo = teacher_probs.detach().max(dim=1)
    idx = torch.nonzero(maxp >= conf).flatten()
    zero = student_feats.sum() * 0.0
    parts = dict.fromkeys(PART_NAMES, 0.0)
    parts["confident"] = float(len(idx))
    if len(idx) == 0:
        return zero, parts
    s = F.normalize(student_feats[idx], dim=1)
    t = F.normalize(teacher_feats.detach()[idx].to(s.dtype), dim=1)
    y = pseudo[idx]
    terms = {
        "align": (1 - (s * t).sum(dim=1)).mean(),
        "point": _point_infonce(s, t, y, temperature, keys, generator),
        "proto": _proto_infonce(s, t, y, subprotos.detach().to(s.device), temperature),
    }
    weights = {"align": w_align, "point": w_point, "proto": w_proto}
    loss = zero
    for name, term in terms.items():
        if term is not None:
            loss = loss + weights[name] * term
            parts[name] = float(term.detach())
    return loss, parts


class SubPrototypes(nn.Module):
    """``per_class`` unit-length sub-prototypes per class, EMA-updated from confident teacher features.

    Buffers: ``centres`` ``[C, K, D]`` (zero rows for classes never updated), ``initialised`` ``[C]``
    bool, ``updates`` (a counter that, with ``seed``, seeds each update's k-means). At most
    ``max_points`` confident points per class (a seeded subset) feed an update.
    """

    def __init__(self, num_classes: int, dim: int, per_class: int = 4, kmeans_steps: int = 5,
                 max_points: int = 4096, seed: int = 0) -> None:
        super().__init__()
        if int(num_classes) < 1 or int(dim) < 1 or int(per_class) < 1 or int(kmeans_steps) < 0 or int(max_points) < 1:
            raise PcalError("SubPrototypes: num_classes, dim, per_class, max_points >= 1 and kmeans_steps >= 0")
        self.num_classes, self.dim, self.per_class = int(num_classes), int(dim), int(per_class)
        self.kmeans_steps, self.max_points, self.seed = int(kmeans_steps), int(max_points), int(seed)
        self.register_buffer("centres", torch.zeros(self.num_classes, self.per_class, self.dim))
        self.register_buffer("initialised", torch.zeros(self.num_classes, dtype=torch.bool))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    def _kmeans(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Spherical k-means on unit rows ``x``: ``(centres [K, D], members per centre [K])``."""
        k = self.per_class
        first = int(torch.randint(len(x), (1,), generator=generator))
        centres = x[first].repeat(k, 1)
        nearest = x @ centres[0]  # cosine to the closest centre so far
        for j in range(1, k):  # farthest-first: each new centre is the point least like the others
            centres[j] = x[nearest.argmin()]
            nearest = torch.maximum(nearest, x @ centres[j])
        for _ in range(self.kmeans_steps + 1):
            assign = (x @ centres.T).argmax(dim=1)
            sums = torch.zeros_like(centres).index_add_(0, assign, x)
            counts = torch.bincount(assign, minlength=k)
            moved = counts > 0
            centres[moved] = F.normalize(sums[moved], dim=1)
        return centres, counts

    @torch.no_grad()
    def update(self, teacher_feats: torch.Tensor, teacher_probs: torch.Tensor, conf: float = 0.8,
               momentum: float = 0.99) -> int:
        """Update the centres of every class with confident points (max prob ``>= conf``); returns how many."""
        if teacher_feats.ndim != 2 or teacher_feats.shape[1] != self.dim:
            raise PcalError(f"SubPrototypes: teacher features must be [P, {self.dim}], "
                            f"got {tuple(teacher_feats.shape)}")
        if teacher_probs.shape != (len(teacher_feats), self.num_classes):
            raise PcalError(f"SubPrototypes: teacher probabilities must be [{len(teacher_feats)}, {self.num_classes}], "
                            f"got {tuple(teacher_probs.shape)}")
        if not 0 <= momentum <= 1:
            raise PcalError(f"SubPrototypes: momentum must be in [0, 1], got {momentum}")
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.updates))
        maxp, pseudo = teacher_probs.max(dim=1)
        feats = F.normalize(teacher_feats.to(self.centres.dtype), dim=1)
        confident = maxp >= conf
        updated = 0
        for c in range(self.num_classes):
            rows = torch.nonzero(confident & (pseudo == c)).flatten()
            if len(rows) == 0:
                continue
            if len(rows) > self.max_points:
                rows = rows[torch.randperm(len(rows), generator=generator)[:self.max_points].to(rows.device)]
            new, counts = self._kmeans(feats[rows], generator)
            if not bool(self.initialised[c]):
                self.centres[c] = new
                self.initialised[c] = True
            else:
                sim = (self.centres[c] @ new.T).cpu().numpy()
                old_ids, new_ids = linear_sum_assignment(-sim)
                old_ids = torch.as_tensor(old_ids, device=new.device)
                new_ids = torch.as_tensor(new_ids, device=new.device)
                live = counts[new_ids] > 0
                old_ids, new_ids = old_ids[live], new_ids[live]
                blended = momentum * self.centres[c, old_ids] + (1 - momentum) * new[new_ids]
                self.centres[c, old_ids] = F.normalize(blended, dim=1)
            updated += 1
        self.updates += 1
        return updated

