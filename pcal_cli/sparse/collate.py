"""Batching of samples: ``SparseTensor``s get a batch column, arrays are stacked (torchsparse v2.1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from pcal_cli.sparse.tensor import SparseTensor


def sparse_collate(inputs: Sequence[SparseTensor]) -> SparseTensor:
    """Concatenate samples with ``[N, 3]`` coordinates into one tensor with ``(batch, x, y, z)``."""
    if not inputs:
        raise ValueError("sparse_collate needs at least one SparseTensor")
    stride = inputs[0].stride
    coords, feats = [], []
    for index, sample in enumerate(inputs):
        if sample.stride != stride:
            raise ValueError(f"sample {index} has stride {sample.stride}, sample 0 has {stride}")
        c = torch.as_tensor(sample.coords)
        if c.dim() != 2 or c.shape[1] != 3:
            raise ValueError(f"sample {index}: coordinates must be [N, 3], got {tuple(c.shape)}")
        batch = torch.full((c.shape[0], 1), index, dtype=c.dtype, device=c.device)
        coords.append(torch.cat([batch, c], dim=1))
        feats.append(torch.as_tensor(sample.feats))
    return SparseTensor(torch.cat(feats, dim=0), torch.cat(coords, dim=0), stride)


def sparse_collate_fn(inputs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """DataLoader ``collate_fn``: per key, dicts recurse, ``SparseTensor``s go through
    :func:`sparse_collate`, numpy arrays and tensors are stacked, anything else becomes a list."""
    output: dict[str, Any] = {}
    for name in inputs[0]:
        values = [sample[name] for sample in inputs]
        first = values[0]
        if isinstance(first, Mapping):
            output[name] = sparse_collate_fn(values)
        elif isinstance(first, SparseTensor):
            output[name] = sparse_collate(values)
        elif isinstance(first, (np.ndarray, torch.Tensor)):
            output[name] = torch.stack([torch.as_tensor(v) for v in values])
        else:
            output[name] = values
    return output
