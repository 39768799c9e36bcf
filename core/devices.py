"""Where training runs: the device, moving batches to it and outputs back, mixed precision.

On CUDA the trainer uses bf16 autocast (fp16 with a `torch.amp.GradScaler` where bf16 is
unsupported) and channels_last for the model and 4-d image batches; on CPU everything stays
float32, which keeps CPU runs bit-for-bit reproducible.
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "CUDA was requested but no GPU is available",
            "--device cuda",
            "use --device cpu or auto",
        )
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"unknown device '{name}'", "--device", "use auto, cpu or cuda")
    return torch.device(name)


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype of training on ``device``: None (float32) off CUDA or when disabled."""
    if device.type != "cuda" or not enabled:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """Autocast to ``dtype`` on ``device``; a disabled context when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def to_device(batch: Any, device: torch.device, non_blocking: bool = True) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device, non_blocking) for v in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    return batch


def to_cpu(output: Any) -> Any:
    """``output`` detached on the CPU; floating tensors as float32 (float64 kept)."""
    if isinstance(output, torch.Tensor):
        output = output.detach()
        if output.is_floating_point() and output.dtype != torch.float64:
            output = output.float()
        return output.cpu()
    if isinstance(output, dict):
        return {k: to_cpu(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)):
        return type(output)(to_cpu(v) for v in output)
    return output


def channels_last(batch: Any) -> Any:
    """4-d tensors of ``batch`` in channels_last memory format (named tuples left as they are)."""
    if isinstance(batch, torch.Tensor):
        return batch.contiguous(memory_format=torch.channels_last) if batch.ndim == 4 else batch
    if isinstance(batch, dict):
        return {k: channels_last(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        return type(batch)(channels_last(v) for v in batch)
    return batch
