"""WSegPC (Duan et al., TPAMI 2025): semantic segmentation learnt from scene-level class tags only.

Pure building blocks; the training loop, the label step and the CLI put them together.

- :mod:`.tags`: a scene's tags as a ``[C]`` bool vector: :func:`tags_from_labels` (the oracle),
  :func:`read_tags_file` (a person's CSV / YAML / JSON), :func:`tags_to_json` /
  :func:`tags_from_json` (the project's representation).
- :mod:`.losses`: :func:`scene_logits` (mean logits per scene) and :func:`mil_loss` (multi-label
  soft margin against the tags), :func:`mask_absent` (absent classes out of reach),
  :func:`region_consistency_loss`, :func:`warmup_weight`.
- :mod:`.pseudo`: :func:`region_average`, :func:`class_adaptive_threshold`
  (``0.8 * N_c / max N``) and :func:`pseudo_labels` (tag mask -> region vote -> threshold).
- :mod:`.crossmodal`: :class:`ProjectionHead`, :func:`crossmodal_infonce`,
  :func:`read_point_features` (a user's per-point 2D features), :class:`ImageFeatures` (a folder
  of them for training), :class:`CrossModalHeads` and :func:`crossmodal_batch_loss` (the
  training term).
- :mod:`.tagdrop`: :func:`structural_surfaces` (the regions on the floor, ceiling and walls) and
  :func:`tag_drop` (remove one from a view, with its tag); :mod:`.views`: :class:`StepScenes`,
  the scenes of one training step with the drop applied.

Where pcal departs from the released code (each module's docstring says why): negative labels
(not only 255) are ignored when tags come from ground truth; absent logits are replaced by a
dtype-safe constant instead of adding ``-1e6``, and tag-less rows are left unmasked; when every
pseudo-label count is 0 the threshold is 0.8, not 0; cross-modal guidance uses fixed per-point 2D
features from the user and a shared projection space with both directions training the 3D side;
tag drop removes the whole floor / ceiling / wall surface (every region lying on the face), not the
single largest superpoint near it.
"""

from pcal_cli.weak.crossmodal import (
    MAX_PAIRS,
    TEMPERATURE,
    CrossModalHeads,
    ImageFeatures,
    ProjectionHead,
    crossmodal_batch_loss,
    crossmodal_infonce,
    read_point_features,
    usable_rows,
)
from pcal_cli.weak.losses import (
    MASK_VALUE,
    WARMUP_STEPS,
    mask_absent,
    mask_value,
    mil_loss,
    region_consistency_loss,
    scene_logits,
    tags_per_point,
    warmup_weight,
)
from pcal_cli.weak.pseudo import BASE_THRESHOLD, ClassPrior, class_adaptive_threshold, pseudo_labels, region_average
from pcal_cli.weak.tagdrop import TAG_DROP, structural_surfaces, tag_drop
from pcal_cli.weak.tags import (
    TAGS_FORMAT,
    TAGS_VERSION,
    read_tags_file,
    tags_from_json,
    tags_from_labels,
    tags_to_json,
)

__all__ = [
    "BASE_THRESHOLD",
    "MASK_VALUE",
    "MAX_PAIRS",
    "TAG_DROP",
    "TAGS_FORMAT",
    "TAGS_VERSION",
    "TEMPERATURE",
    "WARMUP_STEPS",
    "CrossModalHeads",
    "ImageFeatures",
    "ProjectionHead",
    "class_adaptive_threshold",
    "crossmodal_batch_loss",
    "crossmodal_infonce",
    "mask_absent",
    "mask_value",
    "mil_loss",
    "pseudo_labels",
    "ClassPrior",
    "read_point_features",
    "read_tags_file",
    "region_average",
    "region_consistency_loss",
    "scene_logits",
    "structural_surfaces",
    "tag_drop",
    "tags_from_json",
    "tags_from_labels",
    "tags_per_point",
    "tags_to_json",
    "usable_rows",
    "warmup_weight",
]
