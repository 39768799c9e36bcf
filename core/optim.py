"""The optimizer and learning-rate schedule of `tl.core.trainer.Trainer`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .errors import ConfigError


def cosine_with_warmup(
    total_steps: int, warmup_steps: int, floor: float = 0.01
) -> Callable[[int], float]:
    """The LR factor of optimizer step ``step``: linear warmup over ``warmup_steps``, then
    a cosine decay to ``floor`` at ``total_steps`` (a `torch.optim.lr_scheduler.LambdaLR`)."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def build_optimizer(config: Any, param_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov) over a plan's ``param_groups``; ``config`` is a `TrainConfig`."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    raise ConfigError(f"unknown optimizer '{config.optimizer}'", "--optimizer", "use adamw or sgd")
