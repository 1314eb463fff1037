"""Exponential moving average (mean-teacher) of a student network's weights.

After every optimiser step: ``teacher = keep * teacher + (1 - keep) * student`` for every parameter
and every floating-point buffer (BatchNorm running mean and variance included, as HPAL's released
code averages the whole state dict); integer buffers (BatchNorm ``num_batches_tracked``) are copied
from the student. HPAL's keep rate is 0.955.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pcal_cli.errors import PcalError

#: HPAL's EMA keep rate (per optimiser step).
HPAL_KEEP = 0.955


def make_teacher(student: nn.Module) -> nn.Module:
    """An independent deep copy of ``student`` to serve as the EMA teacher: same weights, buffers
    and train/eval mode at the time of the copy, no storage shared with the student, gradients
    off (``requires_grad`` False, no ``.grad``). Its mode is its own afterwards: set it with
    ``teacher.train()`` / ``teacher.eval()`` (HPAL's teacher ran in train mode, BN on batch statistics)."""
    teacher = copy.deepcopy(student)
    for param in teacher.parameters():
        param.grad = None
        param.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, keep: float) -> None:
    """In place: ``t = keep * t + (1 - keep) * s`` for parameters and floating buffers, integer
    buffers copied from the student. The two models must have the same names and shapes."""
    keep = float(keep)
    if not 0.0 <= keep <= 1.0:
        raise PcalError(f"the EMA keep rate must be in [0, 1], got {keep}")
    t_params, s_params = dict(teacher.named_parameters()), dict(student.named_parameters())
    t_bufs, s_bufs = dict(teacher.named_buffers()), dict(student.named_buffers())
    if t_params.keys() != s_params.keys() or t_bufs.keys() != s_bufs.keys():
        raise PcalError("EMA: teacher and student have different parameters or buffers")
    for name, t in (*t_params.items(), *t_bufs.items()):
        s = s_params[name] if name in s_params else s_bufs[name]
        if t.shape != s.shape:
            raise PcalError(f"EMA: {name} has shape {tuple(t.shape)} in the teacher, {tuple(s.shape)} in the student")
        s = s.detach().to(device=t.device, dtype=t.dtype)
        if t.is_floating_point() or t.is_complex():
            t.mul_(keep).add_(s, alpha=1.0 - keep)
        else:
            t.copy_(s)
