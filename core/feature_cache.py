"""Cached backbone features: train a head on a frozen backbone without running it every epoch.

While the backbone is fully frozen (``--strategy linear``, the head-only epochs of
``gradual``) its output for an item never changes, so the trainer computes the features of
the train and val splits once — with the deterministic eval view of the data (no
augmentation) — and the head trains on them through the same loop: history, early stopping
and checkpoints see the whole model, only the step model is ``HeadOnly``
(`tl.core.callbacks.FeatureCaching` swaps the epoch's model and data).

A model qualifies when it has ``.backbone``, ``.head`` and ``features(x)`` with
``forward(x) == head(features(x))`` (`tl.core.models.ClassifierModel`), and batches are
``(inputs, targets)`` pairs. Anything else simply trains uncached. Features live in memory,
or in a memory-mapped ``.npy`` under ``run_dir/feature_cache/`` above
``TL_FEATURE_CACHE_MAX_BYTES`` (default 2 GiB), which is removed when training ends.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ConfigError

MODES = ("auto", "on", "off")
DEFAULT_MAX_BYTES = 2 << 30


def parse_mode(value: Any) -> str:
    if value is None or value is True:
        return "auto" if value is None else "on"
    if value is False:
        return "off"
    text = str(value).strip().lower()
    if text not in MODES:
        raise ConfigError(
            f"unknown --cache-features value '{value}'", "--cache-features", "use auto, on or off"
        )
    return text


def supports_cache(model: nn.Module) -> bool:
    return (
        isinstance(getattr(model, "head", None), nn.Module)
        and isinstance(getattr(model, "backbone", None), nn.Module)
        and callable(getattr(model, "features", None))
        and getattr(model, "supports_feature_cache", True)
    )


def backbone_frozen(model: nn.Module) -> bool:
    return not any(p.requires_grad for p in model.backbone.parameters()) and not any(
        p.requires_grad
        for name, p in model.named_parameters()
        if not name.startswith(("backbone.", "head."))
    )


class HeadOnly(nn.Module):
    """The step model of cached epochs: features in, ``model.head`` out (shared parameters)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.head = model.head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


class CachedFeatures:
    """(features, targets) of one split; ``__getitems__`` returns whole batches at once."""

    def __init__(self, features: Any, targets: torch.Tensor) -> None:
        self.features, self.targets = features, targets

    def __len__(self) -> int:
        return len(self.targets)

    def _rows(self, index: Any) -> torch.Tensor:
        if isinstance(self.features, torch.Tensor):
            return self.features[torch.as_tensor(index)]
        return torch.from_numpy(np.array(self.features[index]))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._rows(index), self.targets[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        order = np.asarray(indices)
        return self._rows(order), self.targets[torch.from_numpy(order)]


def collate_batch(batch: Any) -> Any:
    """The loader's collate for `CachedFeatures`: the batch is already stacked."""
    return batch


def eval_view(dataset: Any) -> Any:
    """The dataset without training augmentation: ``dataset.eval_view()`` when it has one,
    else a shallow copy with ``transform=None``/``augment=False`` where those exist."""
    view = getattr(dataset, "eval_view", None)
    if callable(view):
        return view()
    if getattr(dataset, "transform", None) is not None or getattr(dataset, "augment", False):
        clone = copy.copy(dataset)
        if hasattr(clone, "transform"):
            clone.transform = None
        if hasattr(clone, "augment"):
            clone.augment = False
        return clone
    return dataset


class FeatureCache:
    """Features of the train and val splits under the current (frozen) backbone."""

    def __init__(self, run_dir: Path, max_bytes: int | None = None) -> None:
        self.dir = Path(run_dir) / "feature_cache"
        env = os.environ.get("TL_FEATURE_CACHE_MAX_BYTES")
        self.max_bytes = int(env) if env else (max_bytes or DEFAULT_MAX_BYTES)
        self.splits: dict[str, CachedFeatures] = {}
        self.failed = False

    def build(self, trainer: Any, model: nn.Module, train: Any, val: Any, collate: Any) -> bool:
        """Compute both splits; False (and never again) when the batches do not fit."""
        try:
            self.splits = {
                "train": self._extract(trainer, model, eval_view(train), collate, "train"),
                "val": self._extract(trainer, model, eval_view(val), collate, "val"),
            }
        except _Unsupported as exc:
            trainer.reporter.log(f"feature cache off: {exc}")
            self.failed = True
            self.splits = {}
            return False
        return True

    def _extract(
        self, trainer: Any, model: nn.Module, dataset: Any, collate: Any, split: str
    ) -> CachedFeatures:
        from . import distributed as dist

        shard = dist.shard_indices(len(dataset))
        subset = dataset if shard is None else torch.utils.data.Subset(dataset, shard)
        feats: list[torch.Tensor] = []
        targets: list[torch.Tensor] = []
        model.eval()
        with torch.inference_mode(), trainer.autocast():
            for batch in trainer.loader(
                subset,
                collate,
                shuffle=False,
                keep=False,
                batch_size=max(128, trainer.config.batch_size),
            ):
                if not isinstance(batch, (list, tuple)) or len(batch) != 2:
                    raise _Unsupported("batches are not (inputs, targets) pairs")
                inputs, target = batch
                if not isinstance(inputs, torch.Tensor) or not isinstance(target, torch.Tensor):
                    raise _Unsupported("batch inputs/targets are not tensors")
                out = model.features(trainer.to_device(inputs))
                if not isinstance(out, torch.Tensor) or out.ndim != 2:
                    raise _Unsupported("features() does not return (batch, dim) tensors")
                feats.append(out.float().cpu())
                targets.append(target.cpu())
        features, target_all = torch.cat(feats), torch.cat(targets)
        if shard is not None:
            features, target_all = dist.gather_rows(features, target_all, shard, len(dataset))
        if features.numel() * 4 > self.max_bytes:
            return CachedFeatures(self._memmap(split, features), target_all)
        return CachedFeatures(features, target_all)

    def _memmap(self, split: str, features: torch.Tensor) -> np.ndarray:
        from . import distributed as dist

        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{split}-rank{dist.rank()}.npy"
        array = np.lib.format.open_memmap(
            path, mode="w+", dtype=np.float32, shape=tuple(features.shape)
        )
        array[:] = features.numpy()
        array.flush()
        del array
        return np.load(path, mmap_mode="r")

    def close(self) -> None:
        self.splits = {}
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)


class _Unsupported(Exception):
    pass


def wants_cache(mode: str, model: nn.Module) -> bool:
    """Whether this epoch's head-only training should use cached features."""
    if mode == "off" or not supports_cache(model):
        return False
    return backbone_frozen(model)
