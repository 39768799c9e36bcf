"""``--strategy prototypes``: few-shot classification without gradient training.

Each class's prototype is the mean of the L2-normalised frozen backbone features of its
training images (all of them, or ``--shots K`` per class drawn with the run's seed). The
head scores an image by cosine similarity to every prototype times a scale fitted on the
validation split (temperature scaling of ``10 · cos``), so softmax gives calibrated
probabilities. The head is a plain module replacing ``model.head``: the standard export
and ONNX parity check apply unchanged.

Works for single-label classification models whose forward is ``head(features(x))`` (any
model with ``.backbone``/``.head`` such as `tl.core.models.ClassifierModel`); multi-label
data has no single class per image to average, so it is refused. Its plan freezes the whole
model and, instead of training, computes the head in `PrototypesPlan.fit`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..calibration import fit_temperature
from ..errors import ConfigError, DataError
from .base import FitContext, StrategyPlan, is_multilabel
from .registry import register_strategy

BASE_SCALE = 10.0


class PrototypeHead(nn.Module):
    """``logits = scale · cos(features, prototypes)``."""

    def __init__(self, prototypes: torch.Tensor, scale: float = BASE_SCALE) -> None:
        super().__init__()
        self.register_buffer("prototypes", F.normalize(prototypes.float(), dim=1))
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features.float(), dim=-1) @ self.prototypes.t() * self.scale


def load_prototype_state(
    model: nn.Module, state: dict[str, torch.Tensor]
) -> tuple[list[str], list[str]]:
    """A prototypes run's checkpoint into a freshly built model (its head becomes a
    `PrototypeHead` of the saved size): (missing, unexpected)."""
    saved = state.get("head.prototypes")
    if saved is not None:
        model.requires_grad_(False)
        model.head = PrototypeHead(torch.zeros_like(saved))
    missing, unexpected = model.load_state_dict(state, strict=False)
    return list(missing), list(unexpected)


def _check_single_label(multilabel: bool) -> None:
    if multilabel:
        raise ConfigError(
            "--strategy prototypes needs one class per image; this data is multi-label",
            "--strategy prototypes",
            "use --strategy linear (a frozen backbone with a trained head) for multi-label data",
        )


@torch.no_grad()
def _features(
    model: nn.Module, loader: Any, split_batch: Callable[[Any], tuple[Any, Any]], trainer: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    feats, targets = [], []
    for batch in loader:
        inputs, target = split_batch(trainer.to_device(batch))
        out = model(inputs)
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise ConfigError(
                "--strategy prototypes needs a model whose backbone gives one feature vector per image",
                "--strategy prototypes",
                "use another strategy with this plugin",
            )
        feats.append(F.normalize(out.float(), dim=1).cpu())
        targets.append(torch.as_tensor(target).cpu())
    target = torch.cat(targets)
    if target.ndim != 1 or target.is_floating_point():
        raise ConfigError(
            "--strategy prototypes needs integer class targets (one class per image)",
            "--strategy prototypes",
            "use --strategy linear for multi-label or regression targets",
        )
    return torch.cat(feats), target


def select_shots(targets: np.ndarray, n_classes: int, shots: int | None, seed: int) -> np.ndarray:
    """Indices of the training items that form the prototypes (``shots`` per class)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(n_classes):
        idx = np.flatnonzero(targets == c)
        if shots:
            idx = np.sort(rng.permutation(idx)[: int(shots)])
        chosen.append(idx)
    return np.concatenate(chosen)


class PrototypesPlan(StrategyPlan):
    """Nothing trains; `fit` replaces the head by class prototypes."""

    def fit(self, ctx: FitContext) -> Any:
        """Replace ``ctx.model.head`` by a `PrototypeHead` and save it as the best/last
        checkpoint. Returns a `FitResult` whose ``seconds`` is the time spent."""
        from ..trainer import FitResult

        _check_single_label(ctx.multilabel)
        shots = ctx.shots
        if shots is not None and int(shots) < 1:
            raise ConfigError("--shots must be at least 1", "--shots", "e.g. --shots 5, or omit it")
        if len(ctx.train) == 0:
            raise DataError("the training split is empty", "train", "add data or change the split")
        if ctx.split_batch is None:
            raise TypeError("PrototypesPlan.fit needs ctx.split_batch")
        started = time.time()
        trainer, labels = ctx.trainer, list(ctx.labels)
        model = ctx.model
        model.requires_grad_(False)
        model.head = nn.Identity()
        model = trainer.prepare(model).eval()
        loader = trainer.loader(ctx.train, ctx.collate, shuffle=False)
        feats, targets = _features(model, loader, ctx.split_batch, trainer)
        target_np = targets.numpy()
        counts = np.bincount(target_np, minlength=len(labels))
        if counts.min() == 0:
            missing = [labels[c] for c in range(len(labels)) if counts[c] == 0]
            raise DataError(
                f"no training image of class {', '.join(missing)} to build a prototype from",
                "train",
                "add training images of every class",
            )
        keep = select_shots(target_np, len(labels), shots, ctx.seed)
        protos = torch.stack(
            [feats[keep][targets[keep] == c].mean(dim=0) for c in range(len(labels))]
        )
        head = PrototypeHead(protos)
        if len(ctx.val):
            val_loader = trainer.loader(ctx.val, ctx.collate, shuffle=False)
            val_feats, val_targets = _features(model, val_loader, ctx.split_batch, trainer)
            temperature = fit_temperature(head(val_feats).numpy(), val_targets.numpy())
            head = PrototypeHead(protos, BASE_SCALE / temperature)
        model.head = head.to(trainer.device)
        seconds = time.time() - started
        progress = {
            "epoch": 0,
            "bad_epochs": 0,
            "best_epoch": -1,
            "best_score": None,
            "stopped_early": False,
            "seconds": seconds,
            "history": [],
            "prototypes": {"shots": int(shots) if shots else None, "items": int(len(keep))},
        }
        for tag in ("best", "last"):
            trainer.save_checkpoint(tag, model, progress, meta={"strategy": "prototypes"})
        return FitResult(history=[], best_epoch=-1, seconds=seconds)

    def load_finished_state(
        self, model: nn.Module, state: dict[str, torch.Tensor]
    ) -> tuple[list[str], list[str]]:
        return load_prototype_state(model, state)


@register_strategy("prototypes")
def build(model: nn.Module, options: Mapping[str, Any]) -> PrototypesPlan:
    """The whole model is frozen (no parameter trains, none is counted as trainable)."""
    plan = PrototypesPlan(
        name="prototypes", stages=[], head=[], param_groups=[], trainable_stages=0
    )
    plan.apply(model, 0)
    return plan


def fit_prototypes(
    model: nn.Module,
    data: Any,
    trainer: Any,
    split_batch: Callable[[Any], tuple[Any, Any]],
    shots: int | None = None,
    seed: int = 0,
) -> Any:
    """`PrototypesPlan.fit` for ``data`` (a `tl.core.plugin.TLData`) without a plan."""
    _check_single_label(is_multilabel(data))
    ctx = FitContext.for_data(trainer, model, data, split_batch=split_batch, seed=seed, shots=shots)
    return build(model, {}).fit(ctx)
