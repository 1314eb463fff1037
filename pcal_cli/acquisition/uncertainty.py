"""Point-wise uncertainty scores from softmax probabilities ``[N, C]``.

Higher means more informative everywhere: ``confidence`` is ``1 - max p`` (low confidence
first), ``margin`` is ``1 - (p(1) - p(2))`` (small gap between the two best classes first),
``entropy`` is ``-sum p ln p`` in nats (0 ln 0 = 0). Large tables are processed in row chunks
so that no temporary bigger than ``CHUNK_ROWS x C`` is made.
"""

from __future__ import annotations

import numpy as np
from scipy.special import entr

from pcal_cli.errors import PcalError

#: Rows per chunk for the scores that need a per-element temporary (margin, entropy).
CHUNK_ROWS = 1 << 16


def as_probs(probs: np.ndarray) -> np.ndarray:
    """``probs`` as a floating ``[N, C]`` array (no copy when it already is one)."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] < 1:
        raise PcalError(f"probabilities must be [N, C] with C >= 1, got shape {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        probs = probs.astype(np.float32)
    return probs


def _score_dtype(probs: np.ndarray) -> type:
    return np.float64 if probs.dtype == np.float64 else np.float32


def random_scores(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniform scores in [0, 1) (float64) from ``rng``: the random baseline."""
    if n < 0:
        raise PcalError(f"random_scores: n must be >= 0, got {n}")
    return rng.random(n)


def confidence(probs: np.ndarray) -> np.ndarray:
    """``1 - max_c p`` per row (softmax-confidence baseline: least confident first)."""
    probs = as_probs(probs)
    return (1 - probs.max(axis=1)).astype(_score_dtype(probs), copy=False)


def margin(probs: np.ndarray) -> np.ndarray:
    """``1 - (p(1) - p(2))`` per row, ``p(1) >= p(2)`` the two largest (``p(2) = 0`` if C = 1)."""
    probs = as_probs(probs)
    n, c = probs.shape
    out = np.empty(n, dtype=_score_dtype(probs))
    if c == 1:
        out[:] = 1 - probs[:, 0]
        return out
    for start in range(0, n, CHUNK_ROWS):
        top2 = np.partition(probs[start:start + CHUNK_ROWS], c - 2, axis=1)[:, -2:]
        out[start:start + len(top2)] = 1 - (top2[:, 1] - top2[:, 0])
    return out


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy ``-sum_c p ln p`` per row, in nats; terms with ``p = 0`` count 0."""
    probs = as_probs(probs)
    out = np.empty(len(probs), dtype=_score_dtype(probs))
    for start in range(0, len(probs), CHUNK_ROWS):
        block = probs[start:start + CHUNK_ROWS]
        out[start:start + len(block)] = entr(block).sum(axis=1)
    return out
