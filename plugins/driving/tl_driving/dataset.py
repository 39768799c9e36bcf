"""Torch datasets: letterboxed uint8 images and box targets; augmentation moves the boxes.

Images stay uint8 until the model, which normalises inside (the same module is exported),
so a batch here is exactly what the ONNX graph receives at runtime.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from .records import PAD_VALUE, ImageRecord, Letterbox, open_image

IGNORE_LABEL = -1


def train_transforms() -> v2.Compose:
    return v2.Compose(
        [
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3),
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(degrees=0.0, translate=(0.06, 0.06), scale=(0.8, 1.25), fill=PAD_VALUE),
            v2.ClampBoundingBoxes(),
            v2.SanitizeBoundingBoxes(min_size=2.0),
        ]
    )


class DetectionDataset(torch.utils.data.Dataset):
    """``records`` letterboxed to ``canvas`` (height, width); ``augment`` for training."""

    def __init__(
        self, records: list[ImageRecord], canvas: tuple[int, int], augment: bool = False
    ) -> None:
        self.records = records
        self.canvas = canvas
        self.transforms = train_transforms() if augment else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        record = self.records[index]
        height, width = self.canvas
        box = Letterbox.fit(record.width, record.height, width, height)
        image = torch.from_numpy(box.apply_image(open_image(record.path))).permute(2, 0, 1)
        boxes = torch.from_numpy(box.to_canvas(record.boxes))
        ignore = torch.from_numpy(box.to_canvas(record.ignore))
        labels = torch.from_numpy(record.labels)
        if self.transforms is not None:
            image, boxes, labels, ignore = self._augment(image, boxes, labels, ignore)
        target = {
            "boxes": boxes.float().reshape(-1, 4),
            "labels": labels.long(),
            "ignore": ignore.float().reshape(-1, 4),
            "image_id": torch.tensor(record.image_id),
        }
        return image.contiguous(), target

    def _augment(
        self,
        image: torch.Tensor,
        boxes: torch.Tensor,
        labels: torch.Tensor,
        ignore: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """One box tensor for objects and ignore regions, so both move with the image."""
        all_boxes = torch.cat([boxes, ignore])
        all_labels = torch.cat([labels, torch.full((len(ignore),), IGNORE_LABEL)])
        sample = {
            "image": tv_tensors.Image(image),
            "boxes": tv_tensors.BoundingBoxes(
                all_boxes, format="XYXY", canvas_size=tuple(image.shape[-2:])
            ),
            "labels": all_labels,
        }
        out = self.transforms(sample)
        keep = out["labels"] != IGNORE_LABEL
        plain = out["boxes"].as_subclass(torch.Tensor)
        return (
            out["image"].as_subclass(torch.Tensor),
            plain[keep],
            out["labels"][keep],
            plain[~keep],
        )


def collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[torch.Tensor, list[dict]]:
    images, targets = zip(*batch, strict=True)
    return torch.stack(images), list(targets)


def numpy_batch(dataset: DetectionDataset, indices: list[int]) -> np.ndarray:
    """uint8 NCHW batch of ``indices`` as the runtime feeds it."""
    return np.stack([dataset[i][0].numpy() for i in indices])
