"""Data-parallel training of one controlled run with ``torch.distributed`` (one process per replica).

Launched by ``torchrun --nproc_per_node N`` or ``accelerate launch`` (which set ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``; see :mod:`exposure_env.launch`), every
process runs the same command, builds the same env and backend, and the backend joins the process
group here (:func:`join`): gloo on CPU, NCCL on CUDA, chosen from the device; on CUDA each process
takes the GPU of its ``LOCAL_RANK``. What the replicas share and what they split, per update:

- the reveal ratio and the run seed are rank 0's, broadcast inside the backend's ``run_window`` /
  ``reset`` (so a controller on another rank cannot bypass them);
- the data order is shared (every rank draws the same questions from the run seed) and each rank
  takes a contiguous share of them (:meth:`Replicas.shard`); its rollouts come from its own
  generator stream (:func:`rank_seed`: rank 0 keeps the run seed, so one process is unchanged);
- the student's scoring forward runs through ``DistributedDataParallel`` (:class:`DataParallel`),
  which averages the gradients over ranks during the backward; the loss of each rank is divided by
  the *global* number of completion tokens over the world size (:meth:`DataParallel.normalizers`),
  so DDP's average is exactly the single-process gradient of the pooled per-token mean;
- the statistics (loss and its tail, mismatch, confidence, rollout length, the probe and teacher
  reference log-probs over shares of the probe set) and the evaluation (shares of the test set,
  answers gathered) are reduced over ranks, and the finished record is broadcast from rank 0, so
  every rank's env returns the same observation and reward.

Without a launcher (or with ``WORLD_SIZE=1``) no process group is made, :class:`Replicas` answers
every collective with its input unchanged and the backend takes exactly its single-process path.

Not built here (see docs/scaling.md): sharded parameters (FSDP2 / ZeRO-3) for models that do not
fit one device, and resuming a data-parallel run (each rank's sampling stream would have to be
saved).

This module knows process groups, ranks, tensors and a model's trainable parameters; it knows
nothing about tasks, prompts, reveal ratios, controllers or files.
"""

from __future__ import annotations

import atexit
import inspect
from datetime import timedelta
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from distill_backend.losses import LossOutput
from distill_backend.rollout import PromptBatch, completion_hidden
from exposure_env.errors import ConfigError
from exposure_env.launch import LaunchPosition, launch_position

T = TypeVar("T")

TIMEOUT = timedelta(minutes=60)
"""How long a collective waits for the other ranks. Long, because rank 0 may be building the tiny
default's warm start (minutes) while the others wait at the barrier."""


def rank_seed(seed: int, rank: int) -> int:
    """The seed of ``rank``'s sampling stream in a run seeded ``seed``: ``seed`` itself on rank 0 (a
    single process samples exactly as before), an independent stream for every other rank."""
    if rank == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def process_group_backend(device: torch.device) -> str:
    """NCCL for CUDA tensors, gloo otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def replica_device(device: str, position: LaunchPosition) -> str:
    """The device string of this replica: ``cuda`` (or ``auto`` with CUDA) becomes the GPU of its
    ``LOCAL_RANK``; anything else, and every single-process run, is left as it is."""
    if not position.launched:
        return device
    wants_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return f"cuda:{position.local_rank}" if wants_cuda else device


class Replicas:
    """This process's place among the data-parallel replicas of one run, and the collectives the
    backend runs over them. Inactive (one process, no group): every method returns its input."""

    def __init__(self, position: LaunchPosition, device: str, active: bool) -> None:
        self.position = position
        self.device = device
        """Device string this replica's model goes to."""
        self.active = active
        """True when a process group is in use (even of one process: the collectives then run)."""
        self._comm = torch.device(device) if active and device.startswith("cuda") else torch.device("cpu")

    @property
    def rank(self) -> int:
        return self.position.rank

    @property
    def world_size(self) -> int:
        return self.position.world_size

    # -- work split -------------------------------------------------------------------------
    def shard(self, count: int) -> slice:
        """This rank's contiguous share of ``count`` items (sizes differ by at most one)."""
        return slice(self.rank * count // self.world_size, (self.rank + 1) * count // self.world_size)

    def check_share(self, name: str, count: int) -> None:
        """A global batch of ``count`` items must give every rank at least one."""
        if count < self.world_size:
            raise ConfigError(name, f"at least the number of data-parallel processes ({self.world_size})", count,
                              hint="it is the global batch, split across the processes")

    def main_first(self, fn: Callable[[], T]) -> T:
        """``fn()`` on rank 0, then on the others (e.g. build a cache once, then read it)."""
        if not self.active:
            return fn()
        result = fn() if self.rank == 0 else None
        dist.barrier()
        return result if self.rank == 0 else fn()

    # -- collectives ------------------------------------------------------------------------
    def broadcast(self, values: Sequence[float], dtype: torch.dtype = torch.float64) -> list[Any]:
        """Rank 0's ``values`` on every rank (as Python numbers of ``dtype``)."""
        if not self.active:
            return list(values)
        tensor = torch.tensor(list(values), dtype=dtype, device=self._comm)
        dist.broadcast(tensor, src=0)
        return tensor.tolist()

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks of a float tensor (in float64)."""
        if not self.active:
            return values
        tensor = values.detach().to(self._comm, torch.float64).clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def pooled_mean(self, total: torch.Tensor, count: torch.Tensor) -> float:
        """``sum(total) / sum(count)`` over ranks: a mean pooled over every rank's items, computed as
        ``float(total / count)`` in the tensors' own dtypes, as the single-process code does."""
        if not self.active:
            return float(total / count)
        parts = [total.detach().to(self._comm).clone(), count.detach().to(self._comm).clone()]
        for part in parts:
            dist.all_reduce(part, op=dist.ReduceOp.SUM)
        return float(parts[0] / parts[1])

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """The 1-D ``values`` of every rank, concatenated in rank order (on this rank's device)."""
        if not self.active:
            return values
        local = values.detach().reshape(-1).to(self._comm)
        sizes = torch.tensor([local.numel()], dtype=torch.long, device=self._comm)
        all_sizes = [torch.zeros_like(sizes) for _ in range(self.world_size)]
        dist.all_gather(all_sizes, sizes)
        width = max(int(s) for s in all_sizes)
        padded = torch.zeros(width, dtype=local.dtype, device=self._comm)
        padded[: local.numel()] = local
        parts = [torch.zeros_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat([part[: int(n)] for part, n in zip(parts, all_sizes)]).to(values.device)

    def gather_objects(self, obj: T) -> list[T]:
        """``obj`` of every rank (picklable), in rank order."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def join(device: str, position: LaunchPosition | None = None) -> Replicas:
    """This process's :class:`Replicas`: join the launcher's process group when there is more than
    one process (once per process; left at exit), use one that the caller already made, or none."""
    position = position if position is not None else launch_position()
    if dist.is_available() and dist.is_initialized():  # made by the caller (or an earlier backend)
        position = LaunchPosition(dist.get_rank(), dist.get_world_size(), position.local_rank)
        return Replicas(position, replica_device(device, position), True)
    if not position.launched:
        return Replicas(position, device, False)
    resolved = replica_device(device, position)
    torch_device = torch.device(resolved if resolved != "auto" else "cpu")
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
    dist.init_process_group(process_group_backend(torch_device), init_method="env://", rank=position.rank,
                            world_size=position.world_size, timeout=TIMEOUT)
    atexit.register(_leave)
    return Replicas(position, resolved, True)


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class _StudentScoring(torch.nn.Module):
    """The student's scoring forward as a module, so that it can run inside DDP (DDP prepares the
    gradient averaging in its forward; the output head is applied by the fused loss afterwards,
    still inside the same backward)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, prompt_ids, prompt_mask, completion_ids, completion_mask, repeats: int):  # noqa: ANN001
        return completion_hidden(self.model, PromptBatch(prompt_ids, prompt_mask), completion_ids, completion_mask,
                                 repeats)


class DataParallel:
    """What one update step needs from the replicas: the student forward through DDP, the global
    token normalisers and the reduction of the loss statistics. Pass it to
    :func:`distill_backend.opsd_step.opsd_step` as ``sync``."""

    def __init__(self, replicas: Replicas, model: torch.nn.Module) -> None:
        if not replicas.active:
            raise ValueError("DataParallel needs an active process group")
        self.replicas = replicas
        device = torch.device(replicas.device if replicas.device != "auto" else "cpu")
        ddp = torch.nn.parallel.DistributedDataParallel
        # The model's buffers (rotary tables) never change: no buffer broadcast before each forward
        # (the keyword was renamed in torch 2.13).
        no_buffer_sync = {"forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters
                          else "broadcast_buffers": False}
        self.module = ddp(_StudentScoring(model), device_ids=[device.index] if device.type == "cuda" else None,
                          **no_buffer_sync)

    def hidden(self, prompt: PromptBatch, completion_ids: torch.Tensor, completion_mask: torch.Tensor,
               repeats: int) -> torch.Tensor:
        """:func:`~distill_backend.rollout.completion_hidden` of the student, run by DDP."""
        return self.module(prompt.ids, prompt.mask, completion_ids, completion_mask, repeats)

    def normalizers(self, distill_mask: torch.Tensor, sft_mask: torch.Tensor | None) -> tuple[float, float]:
        """Denominators of the distillation and cross-entropy terms on this rank: the global token
        counts divided by the world size, so that DDP's mean of the ranks' gradients is the
        gradient of (sum over all ranks' tokens) / (all ranks' token count)."""
        local = torch.stack([distill_mask.sum(), sft_mask.sum() if sft_mask is not None else distill_mask.sum() * 0])
        total = self.replicas.sum(local.double())
        world = self.replicas.world_size
        return max(float(total[0]), 1.0) / world, max(float(total[1]), 1.0) / world

    def reduce(self, out: LossOutput) -> LossOutput:
        """The scalars of ``out`` averaged over ranks (each rank's are its share times the world size,
        see :meth:`normalizers`, so the average is the global value); ``per_token`` stays local."""
        scalars = torch.stack([out.loss.detach(), out.mismatch, out.student_confidence, out.distill, out.sft]).double()
        world = self.replicas.world_size
        mean = (self.replicas.sum(scalars) / world).to(out.loss.device)
        dtype = out.loss.dtype
        return LossOutput(mean[0].to(dtype), out.per_token.detach(), mean[1].to(dtype), mean[2].to(dtype),
                          mean[3].to(dtype), mean[4].to(dtype))
