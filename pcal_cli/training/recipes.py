"""Training recipes: what one step does and which networks a checkpoint holds.

- ``supervised``: cross-entropy on the labelled voxels (majority of each voxel's known labels).
- ``teacher-student`` (``--semi``, HPAL): :mod:`pcal_cli.training.mean_teacher`; ``model.pt``
  holds the student (evaluated and scored, as in the paper) and the EMA ``teacher``; with
  ``ts_evaluate="teacher"`` the teacher is the saved ``model`` instead (and the student is kept
  as ``student``).
- ``scene-tags`` / ``scene-tags-consistency`` (``--recipe``, WSegPC): :class:`SceneTags`;
  ``model.pt`` holds the student, the EMA ``teacher``, the ``pseudo_counts`` and, with image
  features, the ``crossmodal`` projection heads.
- ``hybrid-contrastive`` (``--reg``, JoPro): cross-entropy on labelled points plus the cluster-aware
  hybrid contrastive regulariser (:mod:`pcal_cli.jopro.contrastive`) between the student on an
  augmented view and an EMA teacher (keep ramped to 0.99) on the clean view, with per-class
  sub-prototypes updated from the teacher's confident features; ``model.pt`` holds the student
  (evaluated and scored), the ``teacher`` and the ``subprototypes``.

Every step draws from ``numpy.random.default_rng([seed, step])`` and seeds torch with
``(seed, step)``, so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pcal_cli.training import distributed
from pcal_cli.training.data import augment, collate, crop, point_features, skip_crop_and_augment, voxelize
from pcal_cli.training.ema import ema_update, make_teacher
from pcal_cli.training.mean_teacher import point_outputs, ramp_steps, teacher_student_step, two_views

CONTRASTIVE_KEEP = 0.99
TAGS_KEEP = 0.999


class Recipe:
    """Plain supervised training of ``model``."""

    def __init__(self, model: torch.nn.Module, options, num_classes: int) -> None:
        self.model, self.options, self.num_classes = model, options, num_classes
        self.scaler: torch.amp.GradScaler | None = None  # fp16 loss scaling (training/precision.py)
        self.total_steps: int | None = None  # the run's steps (set by the training loop; ramps use it)

    def evaluated(self) -> torch.nn.Module:
        """The network saved as ``model`` (what evaluation and scoring use)."""
        return self.model

    def extras(self) -> dict[str, torch.nn.Module]:
        """Other modules to keep in checkpoints, by name."""
        return {}

    def load(self, state: dict[str, Any]) -> None:
        """Restore the networks from a checkpoint of the same recipe (or a plain one)."""
        self.model.load_state_dict(state["model"])

    def step(self, optimizer, scenes, config, step: int, device) -> float:
        """One optimiser step on ``batch_size`` scenes drawn with ``default_rng([seed, step])``.

        Under torchrun each process takes its share of the same scenes (:func:`distributed.share`),
        skipping the others' random draws, and the loss is the sum over its labelled voxels over
        the global count, so the summed gradients equal the single-process step's.
        """
        options = self.options
        rng = np.random.default_rng([options.seed, step])
        torch.manual_seed(options.seed * 1_000_003 + step)
        count = min(options.batch_size, len(scenes))
        mine = distributed.share(count)
        items = []
        for position, index in enumerate(rng.choice(len(scenes), size=count, replace=False)):
            scene, labels = scenes[index]
            if position not in mine:
                skip_crop_and_augment(len(scene), labels, scene.rgb is not None, options.max_points, rng)
                continue
            keep = crop(scene.xyz, options.max_points, labels, rng)
            xyz, rgb = augment(scene.xyz[keep], None if scene.rgb is None else scene.rgb[keep], rng)
            feats = point_features(xyz, scene.subset(keep), config.channels, rgb=rgb)
            items.append(voxelize(xyz, feats, labels[keep], config.voxel_size, config.num_classes))
        inputs, targets = collate(items, device)
        logits, _ = self.model(inputs)
        if not distributed.is_distributed():
            if not (targets >= 0).any():
                return 0.0
            loss = F.cross_entropy(logits.float(), targets, ignore_index=-1)
            optimizer.zero_grad(set_to_none=True)
            self._backward_and_step(loss, optimizer)
            return float(loss.detach())
        labelled = distributed.sum_over_ranks(int((targets >= 0).sum()))
        if labelled == 0:
            return 0.0
        # a rank without labelled voxels still runs backward (zero loss, same graph): its batch
        # norms' backward collectives must meet the other ranks'
        loss = F.cross_entropy(logits.float(), targets, ignore_index=-1, reduction="sum") / labelled
        optimizer.zero_grad(set_to_none=True)
        self._backward_and_step(loss, optimizer, summed=True)
        return distributed.sum_over_ranks(float(loss.detach()))

    def _backward_and_step(self, loss: torch.Tensor, optimizer, summed: bool = False) -> None:
        """Backward (scaled under fp16), the gradient sum over ranks, then the optimiser step.
        Summing before the scaler's overflow check makes every rank skip the same steps."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()
        if summed:
            distributed.sum_gradients(self.model.parameters())
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()


class TeacherStudent(Recipe):
    """HPAL's mean teacher: the student is trained and (by default) evaluated; the EMA teacher
    makes the consistency targets and pseudo-labels."""

    def __init__(self, model, options, num_classes) -> None:
        super().__init__(model, options, num_classes)
        self.teacher = make_teacher(model)

    def _teacher_evaluated(self) -> bool:
        return getattr(self.options, "ts_evaluate", "student") == "teacher"

    def evaluated(self) -> torch.nn.Module:
        return self.teacher if self._teacher_evaluated() else self.model

    def extras(self) -> dict[str, torch.nn.Module]:
        return {"student": self.model} if self._teacher_evaluated() else {"teacher": self.teacher}

    def load(self, state: dict[str, Any]) -> None:
        """From either layout (``model`` = student + ``teacher``, or ``model`` = teacher +
        ``student``), or from a plain checkpoint (both networks start from it)."""
        if "student" in state:
            student, teacher = state["student"], state["model"]
        else:
            student, teacher = state["model"], state.get("teacher", state["model"])
        self.model.load_state_dict(student)
        self.teacher.load_state_dict(teacher)

    def step(self, optimizer, scenes, config, step, device) -> float:
        return teacher_student_step(self.model, self.teacher, optimizer, scenes, self.options, config, step, device,
                                    total_steps=self.total_steps)


class HybridContrastive(Recipe):
    """JoPro's regulariser: CE + alignment + point InfoNCE + sub-prototype InfoNCE."""

    def __init__(self, model, options, num_classes) -> None:
        super().__init__(model, options, num_classes)
        from pcal_cli.jopro.contrastive import SubPrototypes

        self.teacher = make_teacher(model)
        self.subprototypes = SubPrototypes(num_classes, model.feature_dim, seed=options.seed)

    def extras(self) -> dict[str, torch.nn.Module]:
        return {"teacher": self.teacher, "subprototypes": self.subprototypes}

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.teacher.load_state_dict(state.get("teacher", state["model"]))
        if "subprototypes" in state:
            self.subprototypes.load_state_dict(state["subprototypes"])

    def step(self, optimizer, scenes, config, step, device) -> float:
        from pcal_cli.jopro.contrastive import hybrid_contrastive_loss

        options = self.options
        batch = two_views(scenes, options, config, step, augment)
        student_items, teacher_items, labels = batch.student, batch.teacher, batch.labels
        target = torch.from_numpy(np.concatenate(labels)).to(device)
        with torch.no_grad():
            self.teacher.eval()
            teacher_logits, teacher_feats = point_outputs(self.teacher, teacher_items, device)
            teacher_probs = torch.softmax(teacher_logits.float(), dim=1)
            self.subprototypes.update(teacher_feats.float().cpu(), teacher_probs.cpu(), conf=options.reg_conf)
        student_logits, student_feats = point_outputs(self.model, student_items, device)
        labelled = target >= 0
        loss = (F.cross_entropy(student_logits[labelled], target[labelled]) if labelled.any()
                else student_logits.sum() * 0.0)
        generator = torch.Generator().manual_seed(options.seed * 1_000_003 + step)
        regulariser, _ = hybrid_contrastive_loss(
            student_feats, teacher_feats, teacher_probs, self.subprototypes.centres.to(device),
            conf=options.reg_conf, temperature=options.reg_temperature, w_align=options.reg_weights[0],
            w_point=options.reg_weights[1], w_proto=options.reg_weights[2], generator=generator)
        loss = loss + regulariser
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema_update(self.teacher, self.model, contrastive_keep(step))
        return float(loss.detach())


class PseudoCounts(torch.nn.Module):
    """The running count of accepted pseudo-labels per class (kept in checkpoints)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("counts", torch.zeros(num_classes, dtype=torch.int64))


class SceneTags(Recipe):
    """WSegPC: multiple-instance loss on scene tags, plus region-point consistency (stage 2).

    Scenes come as ``(scene, labels, tags)``. The scene's logits are the mean of its points'
    logits; ``mil_loss`` compares them with its tags. With ``consistency`` an EMA teacher (keep
    0.999) on the clean view gives tag-masked probabilities, averaged per region; the argmax is a
    pseudo-label where its confidence passes the class-adaptive threshold (0.8 N_c / max N), and
    the student learns it (masked cross-entropy). As in the release, stage 1 ramps its scene-tag
    and cross-modal weights linearly from 0, stage 2 its consistency weight (its scene-tag and
    cross-modal weights are 1): over ``tag_warmup`` (:func:`tag_ramp_steps`). Known point labels,
    if any, add a cross-entropy term.

    Tag drop (``tag_drop``, :mod:`pcal_cli.weak.tagdrop`): each tagged floor, ceiling or wall
    surface leaves a scene's views, with its tag, with that probability. Cross-modal guidance
    (``image_features``, :mod:`pcal_cli.weak.crossmodal`): 0.05 times the InfoNCE between the
    student's voxel features and the user's image features, through projection heads kept in
    the checkpoint as ``crossmodal`` and trained by their own optimiser at the network's rate.
    """

    def __init__(self, model, options, num_classes, consistency: bool) -> None:
        super().__init__(model, options, num_classes)
        from pcal_cli.weak.crossmodal import CrossModalHeads, ImageFeatures

        self.consistency = consistency
        self.teacher = make_teacher(model)
        self.pseudo_counts = PseudoCounts(num_classes)
        self.image_features = self.crossmodal = None
        self._checked = False
        self._surfaces: dict[int, dict[int, np.ndarray]] = {}
        if options.image_features is not None:
            self.image_features = ImageFeatures(options.image_features)
            device = next(model.parameters()).device
            self.crossmodal = CrossModalHeads(model.feature_dim, self.image_features.dim, optimizer=options.optimizer,
                                              weight_decay=options.weight_decay).to(device)

    def extras(self) -> dict[str, torch.nn.Module]:
        extras = {"teacher": self.teacher, "pseudo_counts": self.pseudo_counts}
        if self.crossmodal is not None:
            extras["crossmodal"] = self.crossmodal
        return extras

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.teacher.load_state_dict(state.get("teacher", state["model"]))
        if "pseudo_counts" in state:
            self.pseudo_counts.load_state_dict(state["pseudo_counts"])
        if self.crossmodal is not None and "crossmodal" in state:  # the heads' optimiser only on a resume
            self.crossmodal.load_state_dict(state["crossmodal"], optimizer="optimizer" in state)

    def _step_scenes(self, scenes, config, step: int):
        """``scenes`` as this step's views see them (tag drop, point rows), or as they are."""
        from pcal_cli.weak.tagdrop import structural_surfaces
        from pcal_cli.weak.views import StepScenes

        if self.image_features is not None and not self._checked:  # every file, once, before any step
            self.image_features.check([(item[0].name, len(item[0])) for item in scenes])
            self._checked = True
        if self.options.tag_drop == 0 and self.image_features is None:
            return scenes

        def surfaces(index: int) -> dict[int, np.ndarray]:
            if index not in self._surfaces:
                scene = scenes[index][0]
                self._surfaces[index] = structural_surfaces(scene.xyz, scene.region, config.classes)
            return self._surfaces[index]

        return StepScenes(scenes, surfaces, self.options.tag_drop, self.options.seed, step)

    def step(self, optimizer, scenes, config, step, device) -> float:
        from pcal_cli.weak import mil_loss, pseudo_labels, region_consistency_loss, scene_logits, warmup_weight
        from pcal_cli.weak.crossmodal import WEIGHT, crossmodal_batch_loss

        options = self.options
        scenes = self._step_scenes(scenes, config, step)
        views = two_views(scenes, options, config, step, augment)
        student_items, teacher_items, labels = views.student, views.teacher, views.labels
        count = len(views.picked)
        tags = [scenes[index][2] for index in views.picked]
        regions = [part.region for part in views.parts]
        batch = [np.full(len(part), b, dtype=np.int64) for b, part in enumerate(views.parts)]
        logits, features = point_outputs(self.model, student_items, device)
        target = torch.from_numpy(np.concatenate(labels)).to(device)
        batch_index = torch.from_numpy(np.concatenate(batch)).to(device)
        ramp = warmup_weight(step, tag_ramp_steps(options.tag_warmup, self.total_steps or options.steps,
                                                  self.consistency))
        tag_weight = 1.0 if self.consistency else ramp  # stage 2's tag loss is not ramped
        loss = tag_weight * mil_loss(scene_logits(logits, batch_index, count),
                                     torch.from_numpy(np.stack(tags)).to(device))
        labelled = target >= 0
        if labelled.any():
            loss = loss + F.cross_entropy(logits[labelled], target[labelled])
        weight = ramp if self.consistency else 0.0
        if weight > 0:
            with torch.no_grad():
                self.teacher.eval()
                teacher_logits, _ = point_outputs(self.teacher, teacher_items, device)
                probs = torch.softmax(teacher_logits.float(), dim=1).cpu().numpy()
            pseudo, counts, start = [], self.pseudo_counts.counts.cpu().numpy(), 0
            for scene_tags, region in zip(tags, regions):
                chosen, counts = pseudo_labels(probs[start:start + len(region)], scene_tags, region, counts)
                pseudo.append(chosen)
                start += len(region)
            self.pseudo_counts.counts.copy_(torch.from_numpy(counts))
            loss = loss + weight * region_consistency_loss(logits, torch.from_numpy(np.concatenate(pseudo)).to(device))
        if self.crossmodal is not None:
            generator = torch.Generator().manual_seed(options.seed * 1_000_003 + step)
            loss = loss + WEIGHT * tag_weight * crossmodal_batch_loss(features, student_items, views.parts,
                                                                    self.image_features, self.crossmodal, generator)
            self.crossmodal.zero_grad()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if self.crossmodal is not None:
            self.crossmodal.step(optimizer.param_groups[0]["lr"])
        ema_update(self.teacher, self.model, tags_keep(step))
        return float(loss.detach())


#: The release's ramps, 2400 iterations, as shares of its ScanNet stages (60,000 and 30,000 iterations).
TAG_RAMP_STAGE1, TAG_RAMP_STAGE2 = 0.04, 0.08


def tag_ramp_steps(tag_warmup: float | None, total_steps: int, consistency: bool) -> int:
    """Steps of a scene-tag stage's linear ramp: ``tag_warmup`` as a fraction (< 1) of the stage's
    ``total_steps`` or as steps (>= 1), else the release's share of its stage."""
    share = tag_warmup if tag_warmup is not None else (TAG_RAMP_STAGE2 if consistency else TAG_RAMP_STAGE1)
    return ramp_steps(share, total_steps)


def tags_keep(step: int) -> float:
    """The scene-tag teacher's EMA keep rate at ``step``: Mean Teacher's ramp ``min(0.999, 1 - 1/(step + 1))``.

    A constant 0.999 leaves a teacher that is 90 % its starting weights after 100 steps (and the
    starting weights of stage 2 are stage 1's barely trained teacher), so on short schedules its
    pseudo-labels were noise; with the ramp the first step copies the student and the teacher then
    averages over a window that grows to WSegPC's 1000 steps.
    """
    return min(TAGS_KEEP, 1.0 - 1.0 / (step + 1))


def contrastive_keep(step: int) -> float:
    """JoPro's teacher keep rate at ``step``: ``min(0.99, 1 - 1/(step + 1))``, the warm-up of the
    EMA helper in the authors' UCL code (JoPro's release keeps a constant 0.99).

    With the constant rate and a round of a few hundred steps the teacher stays far behind the
    student: after 100 steps it gave no point a softmax of 0.8 (the confidence every term of the
    regulariser needs), so the regulariser was zero whatever its weights (measured on the synthetic
    benchmark). With the ramp the first step copies the student.
    """
    return min(CONTRASTIVE_KEEP, 1.0 - 1.0 / (step + 1))


def make_recipe(model: torch.nn.Module, options, num_classes: int) -> Recipe:
    """The recipe chosen by ``options.recipe``, ``options.semi`` and ``options.reg``."""
    if options.recipe in ("scene-tags", "scene-tags-consistency"):
        return SceneTags(model, options, num_classes, consistency=options.recipe == "scene-tags-consistency")
    if options.semi == "teacher-student":
        return TeacherStudent(model, options, num_classes)
    if options.reg == "hybrid-contrastive":
        return HybridContrastive(model, options, num_classes)
    return Recipe(model, options, num_classes)
