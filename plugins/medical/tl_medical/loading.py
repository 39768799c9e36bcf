"""Medical images → decoded, resized uint8 tensors per split (decoded once, kept in memory)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tl.core import DataError, TLData
from torch.utils.data import Dataset

from .augment import BatchAugment
from .dataset_index import scan
from .preprocess import parse_window, to_model_input
from .readers import read_image
from .splits import assign_splits

SPLITS = ("train", "val", "test")


class ImageDataset(Dataset):
    """uint8 images (N, C, H, W) with targets; training augmentation on the fly, a whole
    batch at a time (`BatchAugment`): the loader fetches batches through ``__getitems__``."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, augment: bool = False) -> None:
        self.images, self.targets, self.augment = images, targets, augment
        self.transform = BatchAugment() if augment else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, target = self.__getitems__([index])[0]
        return image, target

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        index = torch.as_tensor(indices, dtype=torch.long)
        images, targets = self.images[index], self.targets[index]
        if self.transform is not None and self.augment:
            images = self.transform(images)
        return list(zip(images.unbind(0), targets.unbind(0), strict=True))


@dataclass
class MedicalData(TLData):
    in_chans: int = 1
    image_size: int = 0
    multilabel: bool = False
    window: tuple[float, float] | None = None
    items: dict[str, list[str]] = field(default_factory=dict)
    class_weights: list[float] | None = None


def load_dataset(
    path: Path,
    *,
    image_size: int,
    window: str | None,
    channels: str | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    skip_bad: bool,
    augment: bool,
) -> MedicalData:
    """Every image decoded once and resized to ``image_size``; splits by patient and class
    where the data gives none. ``channels`` None: 3 when any image is in colour, else 1."""
    size = int(image_size)
    levels = parse_window(window)
    index = scan(Path(path), skip_bad=skip_bad)
    frame = assign_splits(
        index.frame, val_fraction=float(val_fraction), test_fraction=float(test_fraction),
        seed=int(seed),
    )  # fmt: skip
    skipped = list(index.skipped)
    decoded: list[np.ndarray | None] = []
    formats: Counter[str] = Counter()
    for row in frame.itertuples():
        try:
            pixels, info = read_image(Path(row.path), window=levels)
        except DataError as exc:
            if not skip_bad:
                raise
            skipped.append((row.item, exc.what))
            decoded.append(None)
            continue
        formats[
            str(info.get("format") or Path(row.path).suffix.lower().lstrip(".") or "dicom")
        ] += 1
        decoded.append(pixels)
    keep = [d is not None for d in decoded]
    frame = frame[keep].reset_index(drop=True)
    decoded = [d for d in decoded if d is not None]
    if not decoded:
        raise DataError(
            "no readable image", path, "check the files, or drop --skip-bad to see the first error"
        )

    in_chans = int(channels or ("3" if any(p.ndim == 3 for p in decoded) else "1"))
    images = np.stack([to_model_input(p, size, in_chans) for p in decoded])
    labels = list(index.labels)
    multilabel = bool(index.multilabel)
    targets = _targets(list(frame["labels"]), labels, multilabel)

    splits: dict[str, Any] = {}
    items: dict[str, list[str]] = {}
    for split in SPLITS:
        mask = (frame["split"] == split).to_numpy().copy()
        if not mask.any():
            raise DataError(
                f"the {split} split is empty", path, "add data (at least a few items per class)"
            )
        splits[split] = ImageDataset(
            torch.from_numpy(images[mask]),
            targets[mask],
            augment=split == "train" and augment,
        )
        items[split] = frame.loc[mask, "item"].tolist()
    train_counts = _class_counts(
        targets[(frame["split"] == "train").to_numpy().copy()], labels, multilabel
    )
    if not multilabel and min(train_counts.values()) == 0:
        missing = [k for k, v in train_counts.items() if v == 0]
        raise DataError(
            f"class {missing[0]} has no training image", path, "add images of every class"
        )

    splits_frame = frame[["item", "split"]].copy()
    splits_frame["label"] = ["|".join(v) for v in frame["labels"]]
    splits_frame["patient"] = frame["patient"]
    info = {
        "images": len(frame),
        "classes": labels,
        "multilabel": multilabel,
        "channels": in_chans,
        "image_size": size,
        "formats": dict(formats),
        "patients": int(frame["patient"].nunique()) if frame["patient"].notna().any() else None,
        "split_rule": "stratified by class, grouped by patient"
        if frame["patient"].notna().any()
        else "stratified by class",
        "per_split_class_counts": {
            split: _class_counts(
                targets[torch.from_numpy((frame["split"] == split).to_numpy().copy())],
                labels,
                multilabel,
            )
            for split in SPLITS
        },
        "skipped": len(skipped),
        "skipped_items": [f"{item}: {reason}" for item, reason in skipped[:50]],
        "window": list(levels) if levels else "from the DICOM header",
    }
    return MedicalData(
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        splits=splits_frame,
        labels=labels,
        task="multilabel" if multilabel else ("binary" if len(labels) == 2 else "multiclass"),
        info=info,
        in_chans=in_chans,
        image_size=size,
        multilabel=multilabel,
        window=levels,
        items=items,
        class_weights=_class_weights(train_counts, multilabel),
    )


def _targets(label_lists: Any, labels: list[str], multilabel: bool) -> torch.Tensor:
    position = {name: i for i, name in enumerate(labels)}
    if multilabel:
        out = torch.zeros(len(label_lists), len(labels), dtype=torch.float32)
        for row, names in enumerate(label_lists):
            for name in names:
                out[row, position[name]] = 1.0
        return out
    return torch.tensor([position[names[0]] for names in label_lists], dtype=torch.long)


def _class_counts(targets: torch.Tensor, labels: list[str], multilabel: bool) -> dict[str, int]:
    if multilabel:
        sums = targets.sum(dim=0).tolist() if len(targets) else [0] * len(labels)
        return {name: int(s) for name, s in zip(labels, sums, strict=True)}
    counts = torch.bincount(targets, minlength=len(labels)).tolist()
    return {name: int(c) for name, c in zip(labels, counts, strict=True)}


def _class_weights(counts: dict[str, int], multilabel: bool) -> list[float] | None:
    """Inverse-frequency weights when the largest class is ≥ 1.5× the smallest."""
    values = np.array(list(counts.values()), dtype=np.float64)
    if multilabel or values.min() <= 0 or values.max() / values.min() < 1.5:
        return None
    weights = values.sum() / (len(values) * values)
    return weights.tolist()
