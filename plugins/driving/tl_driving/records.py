"""The one internal annotation format, what a reader finds, and the letterbox shared by
training and runtime.

Boxes are ``(x1, y1, x2, y2)`` in pixels of the original image; ``ignore`` holds regions
(KITTI ``DontCare``, COCO ``iscrowd``) where detections are neither rewarded nor punished.
No torch here: the runtime reads images and letterboxes them with these functions too, so
ONNX inference sees exactly the pixels the model was trained and verified on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tl.core import DataError, Skipped

PAD_VALUE = 114
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
STRIDE = 32


def empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float32)


@dataclass
class ImageRecord:
    """One image and its objects."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=empty_boxes)
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))
    ignore: np.ndarray = field(default_factory=empty_boxes)
    item: str = ""
    image_id: int = 0
    split: str | None = None


@dataclass
class DetectionSet:
    """What a reader found: labelled images, class names, and the images it had to skip
    (``--skip-bad``), each with why."""

    records: list[ImageRecord]
    labels: list[str]
    layout: str
    skipped: list[Skipped] = field(default_factory=list)
    has_splits: bool = False


def skipped_image(item: str, image: Path, exc: DataError) -> Skipped:
    """An image left out by ``--skip-bad``: its item name and the error, with the label file
    and line when the labels were at fault."""
    where = f" ({exc.where})" if exc.where and exc.where != str(image) else ""
    return Skipped(item, exc.what + where)


def item_name(path: Path, root: Path) -> str:
    """``path`` relative to the dataset ``root`` (a folder, or the file the data names)."""
    try:
        return path.relative_to(root if root.is_dir() else root.parent).as_posix()
    except ValueError:
        return path.as_posix()


@dataclass(frozen=True)
class Letterbox:
    """Scale and padding that map an image into a ``height x width`` canvas."""

    scale: float
    pad_x: int
    pad_y: int
    width: int
    height: int

    @classmethod
    def fit(cls, image_w: int, image_h: int, width: int, height: int) -> Letterbox:
        scale = min(width / image_w, height / image_h)
        new_w, new_h = round(image_w * scale), round(image_h * scale)
        return cls(scale, (width - new_w) // 2, (height - new_h) // 2, width, height)

    def apply_image(self, image: Image.Image) -> np.ndarray:
        """``(height, width, 3)`` uint8 canvas with the resized image centred on grey."""
        new_w = round(image.width * self.scale)
        new_h = round(image.height * self.scale)
        resized = image.convert("RGB").resize((new_w, new_h), Image.Resampling.BILINEAR)
        canvas = np.full((self.height, self.width, 3), PAD_VALUE, dtype=np.uint8)
        canvas[self.pad_y : self.pad_y + new_h, self.pad_x : self.pad_x + new_w] = np.asarray(
            resized
        )
        return canvas

    def to_canvas(self, boxes: np.ndarray) -> np.ndarray:
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float32)
        return (boxes * self.scale + offset).astype(np.float32)

    def to_image(self, boxes: np.ndarray, image_w: int, image_h: int) -> np.ndarray:
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float32)
        out = (boxes - offset) / self.scale
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, image_w)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, image_h)
        return out.astype(np.float32)


def canvas_size(image_size: int, aspect: float) -> tuple[int, int]:
    """(height, width) multiples of 32: width ``image_size``, height from the data's h/w."""
    width = max(STRIDE, int(np.ceil(image_size / STRIDE)) * STRIDE)
    height = max(STRIDE, int(np.ceil(width * aspect / STRIDE)) * STRIDE)
    return height, width


def open_image(path: Path) -> Image.Image:
    """Decode an image fully (truncated files fail here, not mid-training)."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(
            "the image is corrupt or not an image", path, "replace the file or use --skip-bad"
        ) from exc


def image_size_of(path: Path) -> tuple[int, int]:
    """(width, height) after checking that the file decodes."""
    image = open_image(path)
    return image.width, image.height


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def read_text(path: Path) -> str:
    """A label / config file as text: UTF-8 (a BOM is allowed), else a `DataError`."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})", path, "save it as UTF-8"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read the file ({exc.strerror})", path, "check it") from None
