"""What goes into model.onnx: uint8 pixels in; normalisation, temperature and softmax inside."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


class ExportModule(nn.Module):
    def __init__(self, model: nn.Module, temperature: float, multilabel: bool) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.multilabel = multilabel

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(image)
        scaled = logits / self.temperature
        probabilities = torch.sigmoid(scaled) if self.multilabel else torch.softmax(scaled, dim=1)
        return logits, probabilities


def real_batches(
    dataset: Any, batch_size: int = 16, max_batches: int = 4
) -> list[dict[str, np.ndarray]]:
    """Un-augmented test images as the runtime feeds them (last batch may be smaller)."""
    images = dataset.images.numpy()
    batches = []
    for start in range(0, min(len(images), batch_size * max_batches), batch_size):
        batches.append({"image": np.ascontiguousarray(images[start : start + batch_size])})
    return batches
