"""Data-parallel training under ``torchrun``: the process group and the few collectives pcal needs.

``torchrun --nproc_per_node N -m pcal_cli train ...`` starts N copies of ``pcal train`` with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment.
:func:`process_group` joins them with :func:`torch.distributed.init_process_group` (``env://``):
NCCL when the training device is CUDA (each process on ``cuda:LOCAL_RANK``), gloo on the CPU.
Without those variables (or with ``WORLD_SIZE=1``) every helper here is a no-op and training is
the plain single-process loop, bit for bit.

How a step is shared (see :meth:`pcal_cli.training.recipes.Recipe.step`): every rank draws the
same ``batch_size`` scenes from ``numpy.random.default_rng([seed, step])`` exactly as one process
would, and works on its contiguous share of them (:func:`share`); the augmentation draws of the
other ranks' scenes are consumed without doing the work, so each scene gets the crop and
augmentation it would get in one process. Batch normalisation takes its statistics over every
rank's voxels (:class:`pcal_cli.sparse.modules.GlobalBatchNorm1d`), the loss is the sum over the
rank's labelled voxels divided by the *global* count (:func:`sum_over_ranks`), and the gradients
are summed over ranks (:func:`sum_gradients`), so the optimiser sees the single-process gradient.

Why an explicit gradient ``all_reduce`` rather than :class:`~torch.nn.parallel.DistributedDataParallel`:

- DDP *averages* gradients; with the loss already normalised by the global labelled count the
  right reduction is a *sum* (scaling the loss by the world size would do it too, but only
  approximately in floating point).
- The synchronised batch norm issues collectives from inside autograd (its backward sums the
  statistics' gradients over ranks); DDP's asynchronous bucket reductions fire from the same
  backward pass, and interleaving the two is a source of ordering hazards on gloo. One flat
  ``all_reduce`` after ``backward()`` keeps the order of collectives fixed and identical on every
  rank.
- No wrapper: the recipes keep working on the plain network (checkpoints have no ``module.``
  prefix, EMA teachers copy the same module), and the saved file is the single-process format.

The cost is that communication does not overlap the backward pass: one ``all_reduce`` of all
gradients per step, small next to a sparse U-Net's forward and backward.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist

from pcal_cli.errors import PcalError

#: How long a collective may wait for the other ranks before failing (a rank that died).
TIMEOUT = timedelta(minutes=30)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise PcalError(f"environment variable {name} must be an integer, got {value!r}") from None


def launched_world_size() -> int:
    """The world size torchrun gave this process (``WORLD_SIZE``; 1 when not launched by it)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    size = _env_int("WORLD_SIZE", 1)
    if size < 1:
        raise PcalError(f"WORLD_SIZE must be at least 1, got {size}")
    return size


def rank() -> int:
    """This process's global rank (``RANK``; 0 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def local_rank() -> int:
    """This process's rank on its node (``LOCAL_RANK``; 0 when not distributed)."""
    return _env_int("LOCAL_RANK", 0)


def world_size() -> int:
    """Number of processes training together (1 unless a process group of several is running)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def is_distributed() -> bool:
    """Whether a process group of more than one process is running."""
    return world_size() > 1


def is_main() -> bool:
    """Whether this process writes files and shows progress (rank 0, or the only process)."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda`` (no index) becomes ``cuda:LOCAL_RANK`` under torchrun.

    An explicit ``cuda:K`` with several processes is refused: two ranks on one GPU would share it.
    """
    if device.type != "cuda" or launched_world_size() == 1:
        return device
    if device.index is not None:
        raise PcalError(f"--device {device}: under torchrun every process uses cuda:LOCAL_RANK; "
                        "pass --device cuda or auto")
    index = local_rank()
    if index >= torch.cuda.device_count():
        raise PcalError(f"LOCAL_RANK {index} but this node has {torch.cuda.device_count()} CUDA device(s); "
                        "start at most that many processes per node (--nproc_per_node)")
    return torch.device("cuda", index)


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA training, ``gloo`` for CPU training."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join torchrun's process group for the duration of the block (nothing when not launched by
    torchrun, or when the caller already runs a group; only a group created here is destroyed)."""
    if launched_world_size() == 1 or dist.is_initialized():
        yield
        return
    if not dist.is_available():
        raise PcalError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run in one process")
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise PcalError(f"WORLD_SIZE is {os.environ.get('WORLD_SIZE')} but {', '.join(missing)} "
                        "is not set: start distributed training with torchrun")
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, init_method="env://", timeout=TIMEOUT,
                                device_id=device if backend == "nccl" else None)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PcalError(f"cannot join the torchrun process group ({backend}): {first}") from None
    try:
        yield
    finally:
        dist.destroy_process_group()


def _device_of_group() -> torch.device:
    """Where small tensors for collectives live: the current CUDA device under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_over_ranks(value: float) -> float:
    """The sum of a number over all ranks (the number itself when not distributed)."""
    if not is_distributed():
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_device_of_group())
    dist.all_reduce(tensor)
    return float(tensor.item())


def check_same(what: str, *values: int) -> None:
    """Fail on every rank when the ranks disagree on ``values`` (e.g. they see different files)."""
    if not is_distributed():
        return
    ints = torch.tensor(list(values), dtype=torch.int64, device=_device_of_group())
    both = torch.cat([ints, -ints])
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    if not torch.equal(both[:len(values)], -both[len(values):]):
        raise PcalError(f"the torchrun processes disagree on {what}: every node must see the same project "
                        "directory (a shared filesystem) and get the same options")


def wait_for_all() -> None:
    """A barrier made of one tiny ``all_reduce`` (works the same on gloo and NCCL)."""
    if is_distributed():
        dist.all_reduce(torch.zeros(1, device=_device_of_group()))


def broadcast_state(modules: Iterable[torch.nn.Module]) -> None:
    """Copy rank 0's parameters and buffers into every rank's modules (the start of training)."""
    if not is_distributed():
        return
    for module in modules:
        for tensor in (*module.parameters(), *module.buffers()):
            dist.broadcast(tensor.data, src=0)


def share(count: int) -> range:
    """The positions, among a step's ``count`` scenes, that this rank trains on (a contiguous
    block of ``count / world_size``; the caller has checked that it divides evenly)."""
    size = world_size()
    per_rank = count // size
    return range(rank() * per_rank, (rank() + 1) * per_rank)


def sum_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Sum every parameter's ``.grad`` over ranks in place, with one flat ``all_reduce``.

    Parameters without a gradient are left alone: every rank runs the same network on its
    share of the batch, so the set of parameters with gradients is the same on all of them.
    """
    if not is_distributed():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def check_supported(options, world: int) -> None:
    """Refuse, with one clear line, what data-parallel training does not do (yet).

    ``options`` is a :class:`~pcal_cli.training.supervised.TrainOptions`.
    """
    if world == 1:
        return
    unsupported = [
        (options.semi == "teacher-student", "--semi teacher-student"),
        (options.reg == "hybrid-contrastive", "--reg hybrid-contrastive"),
        (options.recipe in ("scene-tags", "scene-tags-consistency"), f"--recipe {options.recipe}"),
    ]
    for chosen, name in unsupported:
        if chosen:
            raise PcalError(f"{name} is not supported under torchrun yet ({world} processes); "
                            "train it in one process")
    if options.batch_size % world:
        raise PcalError(f"--batch-size {options.batch_size} does not divide among {world} torchrun processes; "
                        f"use a multiple of {world} (the batch size is the global number of scenes per step)")


def check_scene_count(scenes: int, batch_size: int, world: int) -> None:
    """A step draws ``min(batch_size, scenes)`` scenes; under torchrun that must divide evenly too."""
    count = min(batch_size, scenes)
    if world > 1 and count % world:
        raise PcalError(f"only {scenes} labelled training scene(s), fewer than --batch-size {batch_size}: "
                        f"the {count} scenes of a step do not divide among {world} torchrun processes")
