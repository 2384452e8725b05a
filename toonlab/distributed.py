"""One training run over several processes: ``torchrun --nproc_per_node N toonlab train ...`` (docs/performance.md §4.3).

Data-parallel training as DistributedDataParallel does it: every process holds a full replica of
the model, rank 0's weights are broadcast once at the start, each process draws its own slice of
the unpaired stream (:class:`toonlab.data.loader.UnpairedSampler`'s ``rank``/``world_size``), and
after every backward pass the gradients are averaged over the processes before the optimiser
step, so the replicas stay identical and one step equals a one-process step on the combined batch
(for losses that are means over the batch).

Why the averaging is done here and not by wrapping each network in ``DistributedDataParallel``:
DDP synchronises the gradients of a module's ``forward`` through autograd hooks, and a GAN step
breaks its assumptions -- the discriminator runs twice (real and fake) before one backward, its
parameters are frozen during the generator's backward, and MUNIT and XGAN call their networks
through ``encode``/``decode`` rather than ``forward`` (the failure reported to the MUNIT
reference, its issue #101). The one place every toonlab update passes through is
:meth:`toonlab.models.base.Precision.step`, so the averaging hooks in there, for every model alike.

Losses are averaged too (one small all-reduce per step, together with the "stop" flag of Ctrl-C
or SIGTERM): every process sees the same numbers, so the NaN guard and an interrupt stop all of
them after the same step. Only rank 0 writes checkpoints, samples, logs and pictures.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class World:
    """Where this process stands in a run: its ``rank`` among ``size`` processes (one process: 0 of 1)."""

    rank: int = 0
    size: int = 1

    def __post_init__(self):
        if self.size < 1 or not 0 <= self.rank < self.size:
            raise ValueError(f"rank {self.rank} of world size {self.size} is not a valid place in a run")

    @property
    def is_main(self) -> bool:
        """True for the process that writes files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current_world() -> World:
    """The world of the initialised process group, or a one-process world when there is none."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return World(torch.distributed.get_rank(), torch.distributed.get_world_size())
    return World()


def launched_by_torchrun(environ: Mapping[str, str] = os.environ) -> bool:
    """True when this process is one of several started by ``torchrun`` (it sets ``WORLD_SIZE``)."""
    try:
        return int(environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def local_device(device: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """This process's device under torchrun: ``cuda:LOCAL_RANK`` when CUDA is asked for (or automatic and present)."""
    wants_cuda = (device in (None, "auto") and torch.cuda.is_available()) or device == "cuda"
    if not wants_cuda:
        return device
    local_rank = int(environ.get("LOCAL_RANK", "0"))
    if local_rank >= torch.cuda.device_count():
        raise RuntimeError(f"process {local_rank} of this machine has no GPU ({torch.cuda.device_count()} visible): "
                           "start torchrun with --nproc_per_node at most the number of GPUs")
    return f"cuda:{local_rank}"


def start_world(device: torch.device) -> World:
    """Join the process group torchrun describes in the environment (NCCL on CUDA, gloo on the CPU)."""
    if not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return current_world()


def stop_world() -> None:
    """Leave the process group (the end of a distributed ``toonlab train``)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def broadcast_from_main(module: nn.Module, parameters: bool = True) -> None:
    """Copy rank 0's parameters (when ``parameters``) and buffers into every process.

    DDP does both when it wraps a module, and the buffers again before every forward pass: the
    training loop broadcasts them after every step, so BatchNorm's running statistics (XGAN's
    ``cpu`` preset) stay those of rank 0 on every replica.
    """
    with torch.no_grad():
        for tensor in [*(module.parameters() if parameters else ()), *module.buffers()]:
            torch.distributed.broadcast(tensor.data, src=0)


def average_gradients(parameters: Iterable[torch.Tensor], world: World) -> None:
    """Replace each gradient by its mean over the processes: one all-reduce of all of them, flattened.

    Parameters without a gradient are left alone: every process runs the same code on the same
    model, so the same parameters lack one everywhere (a frozen discriminator in the generator step).
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads or not world.distributed:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def optimizer_parameters(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def average_losses(losses: Mapping[str, float], stop: bool, world: World) -> tuple[dict[str, float], bool]:
    """The losses averaged over the processes, and whether any of them was asked to stop (one all-reduce)."""
    if not world.distributed:
        return dict(losses), stop
    values = torch.tensor([*losses.values(), float(stop)], dtype=torch.float64)
    torch.distributed.all_reduce(values)
    numbers = values.tolist()
    return {k: v / world.size for k, v in zip(losses, numbers)}, numbers[-1] > 0


def process_seed(seed: int, step: int, rank: int) -> int:
    """Seed of the global random generators of process ``rank`` (> 0) at ``step``: each draws its own noise.

    Rank 0 keeps the run's own random state (so a one-process resume continues it); the others are
    derived from the run's seed, the step and the rank, so they differ from rank 0 and from each other.
    """
    return int(np.random.SeedSequence([int(seed), int(step), int(rank)]).generate_state(1)[0])
