"""Data-parallel training when started by ``torchrun`` or ``accelerate launch`` (both set
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``): one process per device, gloo on CPUs, NCCL on GPUs.

Each global micro-batch (``--batch-size`` examples, the same stream of shuffled indices on every
rank) is split across the ranks (rank ``r`` takes every ``world``-th example from ``r``). The loss of
each rank is its summed token loss divided by the labelled tokens of the *whole* micro-batch, so
summing the ranks' LoRA gradients gives exactly the single-process gradient of the same global
batch, whatever the world size: the same adapter up to summation order, and a checkpoint made
with one world size resumes with another. The LoRA gradients are all-reduced by hand after the
accumulated micro-batches (a few MB): the chunked loss calls the decoder directly, which
``DistributedDataParallel``'s hooks, built around the wrapped module's own forward, do not follow.
Rank 0 alone writes checkpoints, ``metrics.jsonl`` and the adapter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import EdgecompError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, indices: list[int]) -> list[int]:
        """This rank's examples of a global micro-batch."""
        return indices[self.rank :: self.size]

    def sum(self, value):
        """``value`` (a tensor, summed in place, or a number) summed over the ranks."""
        if self.size == 1:
            return value
        import torch
        import torch.distributed as dist

        if isinstance(value, torch.Tensor):
            dist.all_reduce(value)
            return value
        tensor = torch.tensor(float(value), dtype=torch.float64, device=_device())
        dist.all_reduce(tensor)
        return tensor.item()


def launched_size() -> int:
    """The world size the launcher set (1 when not launched by torchrun or accelerate launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_split(batch_size: int, size: int) -> None:
    if batch_size % size:
        raise EdgecompError(f"--batch-size {batch_size} does not split across {size} processes")


def _device() -> str:
    import torch

    return f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"


def world(device: str) -> World:
    """This process's place in the run, joining the process group on first call when there are several."""
    size = launched_size()
    if size == 1:
        return World()
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return World(dist.get_rank(), dist.get_world_size())
