"""The image classifier every image plugin starts from: a timm backbone + a linear head."""

from __future__ import annotations

from torch import nn


class ClassifierModel(nn.Module):
    """``backbone`` (timm, ``num_classes=0`` → pooled features) followed by ``head``.

    Keeping the head outside timm's model makes the backbone/head split explicit for the
    freezing strategies, feature caching and weight transfer across label sets.
    """

    def __init__(self, backbone: nn.Module, num_outputs: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.num_features, num_outputs))

    def forward(self, x):
        return self.head(self.backbone(x))
