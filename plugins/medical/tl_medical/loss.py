"""The training loss of one medical model, kept on that model (never on the plugin).

Class weights come from the training split and label smoothing from the run's options, so
two models of one plugin object (main, ``--compare-scratch``, a distilled student …) each
carry their own. The loss is a plain object, not an ``nn.Module``: it stays out of the state
dict, the checkpoints and the ONNX graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from tl.core import PluginError
from torch import nn

ATTRIBUTE = "loss"
#: attributes under which the trainer's wrappers hold the model: DDP's ``module`` and
#: torch.compile's ``_orig_mod``
_WRAPPED = ("module", "_orig_mod")


class ImageLoss:
    """Cross-entropy (class-weighted, label-smoothed) or, for multi-label, BCE on logits."""

    def __init__(
        self, multilabel: bool, class_weights: Sequence[float] | None, label_smoothing: float
    ) -> None:
        self.multilabel = multilabel
        self.label_smoothing = float(label_smoothing)
        self.weight = (
            torch.tensor(list(class_weights), dtype=torch.float32)
            if class_weights and not multilabel
            else None
        )

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(logits, targets)
        if self.weight is not None and self.weight.device != logits.device:
            self.weight = self.weight.to(logits.device)
        return F.cross_entropy(
            logits.float(), targets, weight=self.weight, label_smoothing=self.label_smoothing
        )


def attach_loss(model: nn.Module, loss: ImageLoss) -> None:
    """Put ``loss`` on the model and on its head: the feature cache trains the head alone
    (a head-only module whose ``head`` is this model's)."""
    setattr(model, ATTRIBUTE, loss)
    setattr(model.head, ATTRIBUTE, loss)


def model_loss(model: Any) -> ImageLoss:
    """The loss `attach_loss` put on ``model``, seen through the trainer's wrappers."""
    module = model
    for _ in range(4):
        for holder in (module, getattr(module, "head", None)):
            loss = getattr(holder, "__dict__", {}).get(ATTRIBUTE)
            if isinstance(loss, ImageLoss):
                return loss
        module = next(
            (
                getattr(module, n)
                for n in _WRAPPED
                if isinstance(getattr(module, n, None), nn.Module)
            ),
            None,
        )
        if module is None:
            break
    raise PluginError(
        f"{type(model).__name__} carries no medical loss",
        "tl_medical",
        "train models made by MedicalPlugin.build_model",
    )
