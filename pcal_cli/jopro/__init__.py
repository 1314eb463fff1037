"""JoPro (Yao et al., Knowledge-Based Systems 2025): active learning with joint probabilistic modelling.

Pure building blocks, arrays in and arrays out; the round engine does the I/O.

- :mod:`.flow`: :class:`FeatureFlow`, a RealNVP-style normalising flow with a linear classifier on
  its latent (``p(f)`` and ``p(y | f)``), trained by :func:`fit_flow`; :func:`l2_normalise`.
- :mod:`.prototypes`: :func:`class_prototypes`, the per-class mixing anchors (+ which are present).
- :mod:`.fms`: :func:`fms_scores`, the feature-mixing stability score (low = ask first).
- :mod:`.select`: :func:`jopro_select`, per-scene candidates, spatial and prototype suppression,
  then the budget.
- :mod:`.contrastive`: :func:`hybrid_contrastive_loss` and :class:`SubPrototypes`, the
  cluster-aware hybrid contrastive regulariser for teacher-student training.

Where pcal departs from the released code (each module's docstring says why): prototypes of
classes with no data are flagged absent instead of being zero vectors; the spatial radius is a
true Euclidean distance (the release compared squared distances with 0.2); the budget is global;
the contrastive part (released only as bytecode) is reconstructed with cosine similarities.
"""

from pcal_cli.jopro.contrastive import SubPrototypes, hybrid_contrastive_loss
from pcal_cli.jopro.flow import FeatureFlow, fit_flow, l2_normalise
from pcal_cli.jopro.fms import DEFAULT_ALPHAS, fms_scores, mixing_table
from pcal_cli.jopro.prototypes import class_prototypes
from pcal_cli.jopro.select import jopro_select

__all__ = [
    "DEFAULT_ALPHAS",
    "FeatureFlow",
    "SubPrototypes",
    "class_prototypes",
    "fit_flow",
    "fms_scores",
    "hybrid_contrastive_loss",
    "jopro_select",
    "l2_normalise",
    "mixing_table",
]
