"""A process's place in a torchrun job: what encoder training and the teacher's job share about ranks."""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int
    world: int
    device: torch.device

    @classmethod
    def start(cls, device: str | None = None) -> "Ranks":
        """Join the process group torchrun describes in the environment, if there is one."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        gpu = torch.cuda.is_available() if device is None else device.startswith("cuda")
        if gpu and not torch.cuda.is_available():
            why = "this torch is a CPU build" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(
                f"device {device!r}: {why} (torch {torch.__version__}); use --device cpu, or install "
                "torch's CUDA build (README, 'Installing torch')"
            )
        if world == 1:
            return cls(0, 1, torch.device(device or ("cuda" if gpu else "cpu")))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            dist.init_process_group("nccl" if gpu else "gloo")
        if gpu:
            torch.cuda.set_device(local_rank)
        return cls(
            dist.get_rank(), dist.get_world_size(), torch.device(f"cuda:{local_rank}" if gpu else "cpu")
        )

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for alone)."""
        if self.world > 1:
            dist.barrier()

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Make every rank hold rank 0's BatchNorm statistics (each rank updated its own)."""
        if self.world > 1:
            for buffer in module.buffers():
                dist.broadcast(buffer, 0)

    def check_agree(self, module: nn.Module, what: str) -> None:
        if self.world == 1:
            return
        flat = torch.cat([t.detach().double().flatten() for t in module.state_dict().values()])
        gathered = [torch.empty_like(flat) for _ in range(self.world)]
        dist.all_gather(gathered, flat)
        if not all(torch.equal(gathered[0], other) for other in gathered[1:]):
            raise RuntimeError(f"{what}: ranks ended with different weights")
