"""Imbalance-aware losses: class-weighted BCE (default) or focal loss.

Only the training loss is weighted; validation and test keep the real fraud rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tl.core import ConfigError
from torch import nn

LOSSES = ("weighted", "focal", "plain")


class FraudLoss(nn.Module):
    """Holds plain floats only, so it adds nothing to the model's state dict."""

    def __init__(self, kind: str = "weighted", pos_weight: float = 1.0, gamma: float = 2.0) -> None:
        super().__init__()
        if kind not in LOSSES:
            raise ConfigError(f"unknown loss '{kind}'", "--loss", f"use one of {', '.join(LOSSES)}")
        self.kind, self.pos_weight, self.gamma = kind, float(pos_weight), float(gamma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = logits.float(), target.float()
        if self.kind == "focal":
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            p_true = torch.exp(-bce)
            alpha = torch.where(target > 0.5, 0.75, 0.25)
            return (alpha * (1 - p_true) ** self.gamma * bce).mean()
        weight = None
        if self.kind == "weighted":
            weight = torch.tensor(self.pos_weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)


def balanced_pos_weight(labels, cap: float = 50.0) -> float:
    """``sqrt(negatives / positives)``: strong enough to stop the model ignoring fraud,
    mild enough that one noisy positive does not dominate a batch."""
    positives = float(labels.sum())
    negatives = float(len(labels) - positives)
    return float(min(cap, max(1.0, (negatives / max(positives, 1.0)) ** 0.5)))
