"""Running a trained model on a whole scene and mapping voxel outputs back to every point."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pcal_cli.data.scene import Scene
from pcal_cli.sparse import SparseTensor
from pcal_cli.training.data import collate, point_features, voxelize


@dataclass
class ScenePrediction:
    """Voxel-level outputs and the map from points to voxels: ``logits[inverse]`` are per point."""

    logits: torch.Tensor  # [V, C] float32, on the CPU
    features: torch.Tensor  # [V, D] last decoder features, on the CPU
    inverse: np.ndarray  # [N] point -> voxel

    @property
    def point_labels(self) -> np.ndarray:
        return self.logits.argmax(dim=1).numpy()[self.inverse].astype(np.int16)


def scene_inputs(scene: Scene, channels: list[str], voxel_size: float, num_classes: int,
                 device: torch.device) -> tuple[SparseTensor, np.ndarray]:
    """The network input of a whole scene (no augmentation) and its point -> voxel map."""
    feats = point_features(scene.xyz, scene, channels)
    unknown = np.full(len(scene), -1, dtype=np.int16)  # inference never looks at labels
    voxels = voxelize(scene.xyz, feats, unknown, voxel_size, num_classes)
    inputs, _ = collate([voxels], device)
    return inputs, voxels.inverse


@torch.no_grad()
def predict_scene(model: torch.nn.Module, scene: Scene, channels: list[str], voxel_size: float,
                  num_classes: int, device: torch.device) -> ScenePrediction:
    """Voxelise ``scene`` without augmentation, run ``model`` in eval mode, keep outputs on the CPU."""
    model.eval()
    inputs, inverse = scene_inputs(scene, channels, voxel_size, num_classes, device)
    logits, features = model(inputs)
    return ScenePrediction(logits.float().cpu(), features.float().cpu(), inverse)
