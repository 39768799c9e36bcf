"""The image classifier every image plugin starts from: a timm backbone + a linear head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ImageNormalize(nn.Module):
    """uint8 (or [0, 255] float) images → ``(x / 255 - mean) / std``; lives inside the model
    so that exported ONNX graphs take raw pixels and loaders move 4× fewer bytes."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


def feature_dim(backbone: nn.Module) -> int:
    """Width of a ``num_classes=0`` timm model's output: ``head_hidden_size`` where a
    pre-logits layer follows the pooling (MobileNetV3's ``conv_head``), else ``num_features``."""
    return int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)


class ClassifierModel(nn.Module):
    """``normalize`` → ``backbone`` (timm, ``num_classes=0``: pooled features) → ``head``.

    Keeping the head outside timm's model makes the backbone/head split explicit for the
    freezing strategies, feature caching and weight transfer across label sets.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_outputs: int,
        dropout: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.normalize = ImageNormalize(mean, std) if mean is not None else nn.Identity()
        self.backbone = backbone
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(feature_dim(backbone), num_outputs)
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
