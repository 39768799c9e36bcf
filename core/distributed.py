"""Process-group helpers for DistributedDataParallel runs (``torchrun`` / ``tl run --devices N``).

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables; `setup`
joins the group (nccl on CUDA, gloo on CPU). Everything here is a no-op in a single process,
so the trainer and `tl.core.run` call these helpers unconditionally.

What runs where: every rank trains on its `DistributedSampler` shard of each global batch
(``--batch-size`` is the global batch, split evenly over the ranks); rank 0 alone validates
on the full val split and broadcasts the metrics (so early stopping agrees everywhere),
writes logs, checkpoints, history, evaluation, ONNX export and the report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from .errors import ConfigError


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def setup(device: str = "auto") -> bool:
    """Join the process group torchrun describes; False when not launched by torchrun."""
    if env_world_size() <= 1 or is_distributed():
        return is_distributed()
    cuda = device != "cpu" and torch.cuda.is_available()
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "CUDA was requested but no GPU is available", "--device cuda", "use --device cpu"
        )
    if cuda:
        if local_rank() >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {local_rank()} has no GPU ({torch.cuda.device_count()} visible)",
                "--nproc_per_node",
                "start at most one process per GPU",
            )
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timedelta(minutes=30))
    return True


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for(device: torch.device) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` under DDP on GPUs."""
    if is_distributed() and device.type == "cuda":
        return torch.device("cuda", local_rank())
    return device


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast(value: Any, src: int = 0) -> Any:
    """A picklable value from rank ``src`` to all ranks."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / dist.get_world_size()


def sync_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) everywhere."""
    if not is_distributed():
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def local_batch_size(batch_size: int) -> int:
    size = world_size()
    if batch_size % size:
        raise ConfigError(
            f"--batch-size {batch_size} does not split over {size} processes",
            "--batch-size",
            f"use a multiple of {size} (it is the global batch size)",
        )
    return batch_size // size


def shard_indices(n: int) -> list[int] | None:
    """This rank's strided share of ``range(n)``; None in a single process."""
    if not is_distributed():
        return None
    return list(range(rank(), n, world_size()))


def gather_rows(
    features: torch.Tensor, targets: torch.Tensor, shard: list[int], n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reassemble per-rank rows (from `shard_indices`) into the full, ordered tensors."""
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, (shard, features, targets))
    full_f = torch.empty((n, *features.shape[1:]), dtype=features.dtype)
    full_t = torch.empty((n, *targets.shape[1:]), dtype=targets.dtype)
    for index, feats, targs in parts:
        order = torch.as_tensor(index, dtype=torch.long)
        full_f[order], full_t[order] = feats, targs
    return full_f, full_t


def launch(nproc: int, argv: list[str]) -> int:
    """``tl run --devices N``: rerun this command under torchrun with N local processes."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "tl.cli",
        *argv,
    ]
    return subprocess.call(cmd)


def strip_devices(argv: list[str]) -> list[str]:
    """``argv`` without ``--devices N`` / ``--devices=N``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--devices":
            skip = True
            continue
        if arg.startswith("--devices="):
            continue
        out.append(arg)
    return out
