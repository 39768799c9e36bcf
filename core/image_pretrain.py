"""Image pretraining for `tl pretrain`: SimCLR on unlabelled images, or supervised on a source
label set. Image plugins call `image_pretrain_task` from their ``pretrain_task``.

Why SimCLR (NT-Xent): on a small CPU budget it is the method that learns something within a
few epochs from a few hundred images — no momentum encoder to warm up (BYOL) and no
multi-crop teacher (DINO), one forward over both views per batch. What the backbone learns
is set by the augmentations: they must change everything *but* what matters. For
radiographs that is position, scale, small rotations, exposure (brightness/contrast) and
noise; no flips (laterality matters), no colour jitter, no crops so tight that a lesion
drops out of view.

Augmentation runs on whole batches (one ``affine_grid``/``grid_sample``), on the training
device, from the global RNG the trainer reseeds every epoch, so runs are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from .backbones import BackboneSpec, create_backbone, data_config
from .errors import ConfigError, DataError
from .models import ClassifierModel, ImageNormalize, feature_dim
from .pretrain import PretrainTask

METHODS = ("simclr", "supervised")


class BatchAugment(nn.Module):
    """Random resized crop + rotation + translation (one affine warp) and brightness /
    contrast jitter + noise, per image of a ``[0, 255]`` batch (N, C, H, W).

    The defaults are mild on purpose: with SimCLR's usual strength (crops down to 8 % of the
    area, strong jitter) the NT-Xent loss of a small CPU run stays at chance for the
    first hundred steps; with these it falls within tens of steps, and a lesion stays in
    view of both crops."""

    def __init__(
        self,
        scale: tuple[float, float] = (0.7, 1.0),
        ratio: tuple[float, float] = (4 / 5, 5 / 4),
        degrees: float = 5.0,
        brightness: float = 0.1,
        contrast: float = 0.1,
        noise: float = 2.0,
        flip: bool = False,
    ) -> None:
        super().__init__()
        self.scale, self.ratio, self.degrees = scale, ratio, degrees
        self.brightness, self.contrast, self.noise, self.flip = brightness, contrast, noise, flip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        n, device = x.shape[0], x.device

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, device=device) * (high - low) + low

        area = uniform(*self.scale)
        log_ratio = uniform(math.log(self.ratio[0]), math.log(self.ratio[1]))
        w = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)  # fraction of the width
        h = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
        cx, cy = (
            (torch.rand(n, device=device) * 2 - 1) * (1 - w),
            (torch.rand(n, device=device) * 2 - 1) * (1 - h),
        )
        angle = uniform(-self.degrees, self.degrees) * (math.pi / 180)
        cos, sin = torch.cos(angle), torch.sin(angle)
        sx = w * torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0) if self.flip else w
        theta = torch.stack(
            [torch.stack([sx * cos, -h * sin, cx], 1), torch.stack([sx * sin, h * cos, cy], 1)], 1
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        c = uniform(1 - self.contrast, 1 + self.contrast).view(n, 1, 1, 1)
        b = uniform(-self.brightness, self.brightness).view(n, 1, 1, 1) * 255.0
        x = (x - mean) * c + mean + b
        if self.noise:
            x = x + torch.randn_like(x) * self.noise
        return x.clamp(0.0, 255.0)


class ContrastiveModel(nn.Module):
    """normalize → backbone → projection MLP (the ``head``, dropped after pretraining)."""

    def __init__(
        self,
        backbone: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        hidden: int = 512,
        out: int = 128,
    ) -> None:
        super().__init__()
        self.normalize = ImageNormalize(mean, std)
        self.backbone = backbone
        self.head = nn.Sequential(
            nn.Linear(feature_dim(backbone), hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.normalize(x)))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> tuple[torch.Tensor, Any]:
    """SimCLR's loss: each view must pick its partner among the other 2N - 1 embeddings.
    Returns (loss, accuracy of that pick)."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    loss = F.cross_entropy(sim, target)
    accuracy = (sim.argmax(1) == target).float().mean()
    return loss, accuracy


class _Images(Dataset):
    def __init__(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> None:
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Any:
        if self.targets is None:
            return self.images[index]
        return self.images[index], self.targets[index]


def _split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = min(n - 2, max(2, round(n * val_fraction))) if val_fraction > 0 else 0
    return order[n_val:], order[:n_val]


def image_pretrain_task(
    spec: BackboneSpec,
    images: torch.Tensor,
    *,
    method: str = "simclr",
    targets: torch.Tensor | None = None,
    labels: list[str] | None = None,
    val_images: torch.Tensor | None = None,
    val_targets: torch.Tensor | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    augment: BatchAugment | None = None,
    temperature: float = 0.2,
    metadata: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
) -> PretrainTask:
    """A `PretrainTask` for uint8 images ``(N, C, H, W)``.

    ``method="simclr"``: self-supervised (NT-Xent over two augmented views), labels ignored.
    ``method="supervised"``: classification of ``targets`` (long class indices, or float
    multi-hot) named by ``labels``; the source labels are stored in the weights' metadata
    and the head is dropped at fine-tuning. Validation images are ``val_images`` or a
    seeded ``val_fraction`` of ``images``. The backbone is built with
    ``in_chans = images.shape[1]`` and normalised with ``mean``/``std`` (default: timm's
    data config, averaged over RGB for one channel) inside the model.
    """
    if method not in METHODS:
        raise ConfigError(
            f"unknown pretraining method '{method}'", "--method", "use simclr or supervised"
        )
    if images.ndim != 4 or images.dtype != torch.uint8:
        raise DataError(
            "pretraining images must be uint8 (N, C, H, W)", "pretrain", "report this bug"
        )
    if len(images) < 8:
        raise DataError(
            f"only {len(images)} images to pretrain on",
            "--data",
            "give at least a few dozen images",
        )
    in_chans = int(images.shape[1])
    backbone = create_backbone(spec, num_classes=0, in_chans=in_chans)
    if mean is None or std is None:
        config = data_config(backbone, int(images.shape[-1]), in_chans)
        mean, std = config["mean"], config["std"]
    augment = augment or BatchAugment()
    if val_images is None:
        train_idx, val_idx = _split(len(images), val_fraction, seed)
        val_images = images[val_idx]
        val_targets = targets[val_idx] if targets is not None else None
        images = images[train_idx]
        targets = targets[train_idx] if targets is not None else None
    meta = {
        **(metadata or {}),
        "method": method,
        "in_chans": in_chans,
        "image_size": int(images.shape[-1]),
        "mean": list(mean),
        "std": list(std),
    }
    facts = {
        **(info or {}),
        "n_train": len(images),
        "n_val": len(val_images),
        "augmentation": {
            "scale": augment.scale,
            "degrees": augment.degrees,
            "brightness": augment.brightness,
            "contrast": augment.contrast,
            "noise": augment.noise,
            "flip": augment.flip,
        },
    }
    if method == "simclr":
        return _simclr(backbone, images, val_images, mean, std, augment, temperature, meta, facts)
    if targets is None or not labels:
        raise DataError(
            "supervised pretraining needs labelled images",
            "--data",
            "use a labelled folder or --method simclr",
        )
    return _supervised(
        backbone, images, targets, val_images, val_targets, labels, mean, std, augment, meta, facts
    )


def _simclr(backbone, train, val, mean, std, augment, temperature, meta, facts) -> PretrainTask:
    def training_step(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return _contrastive(model, batch, augment, temperature)[0]

    def predict_step(model: nn.Module, batch: torch.Tensor) -> dict[str, Any]:
        loss, accuracy = _contrastive(model, batch, augment, temperature)
        return {"loss": loss, "pair_accuracy": accuracy}

    def metrics(outputs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "loss": float(torch.stack([o["loss"] for o in outputs]).mean()),
            "pair_accuracy": float(torch.stack([o["pair_accuracy"] for o in outputs]).mean()),
        }

    return PretrainTask(
        model=ContrastiveModel(backbone, mean, std),
        train=_Images(train),
        val=_Images(val) if len(val) else None,
        training_step=training_step,
        predict_step=predict_step,
        metrics=metrics,
        method="self-supervised (SimCLR, NT-Xent)",
        metadata={**meta, "temperature": temperature},
        info=facts,
    )


def _contrastive(model, images, augment, temperature):
    if len(images) < 2:  # a last batch of one has no negatives
        zero = model(augment(images)).sum() * 0.0
        return zero, torch.ones(())
    views = torch.cat([augment(images), augment(images)])
    z = model(views)
    return nt_xent(z[: len(images)], z[len(images) :], temperature)


def _supervised(
    backbone, train, targets, val, val_targets, labels, mean, std, augment, meta, facts
):
    multilabel = targets.is_floating_point()
    loss_fn = nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss()

    def training_step(model: nn.Module, batch: Any) -> torch.Tensor:
        images, y = batch
        return loss_fn(model(augment(images)).float(), y)

    def predict_step(model: nn.Module, batch: Any) -> dict[str, Any]:
        images, y = batch
        logits = model(images).float()
        return {"logits": logits, "targets": y, "loss": loss_fn(logits, y)}

    def metrics(outputs: list[dict[str, Any]]) -> dict[str, Any]:
        logits = torch.cat([o["logits"] for o in outputs])
        y = torch.cat([o["targets"] for o in outputs])
        correct = ((logits > 0) == (y > 0.5)).all(1) if multilabel else logits.argmax(1) == y
        return {
            "loss": float(torch.stack([o["loss"] for o in outputs]).mean()),
            "accuracy": float(correct.float().mean()),
        }

    return PretrainTask(
        model=ClassifierModel(backbone, len(labels), mean=mean, std=std),
        train=_Images(train, targets),
        val=_Images(val, val_targets) if len(val) else None,
        training_step=training_step,
        predict_step=predict_step,
        metrics=metrics,
        monitor="accuracy",
        monitor_mode="max",
        method="supervised",
        metadata={**meta, "source_labels": list(labels), "multilabel": multilabel},
        info=facts,
    )


__all__ = ["BatchAugment", "ContrastiveModel", "image_pretrain_task", "nt_xent"]
