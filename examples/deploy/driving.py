"""Detect objects with a tl driving model.onnx — onnxruntime, numpy and Pillow only.

    python driving.py MODEL.onnx IMAGE_OR_FOLDER [OUT.csv]

Each image is letterboxed into the graph's uint8 RGB canvas (``metadata["input"]``:
height × width; ``preprocessing.letterbox``: scaled to fit keeping its aspect, Pillow
bilinear, centred on ``pad_value`` grey); normalisation, the detector and its NMS are in the
graph, which returns ``(batch, max_det, 6)`` rows ``x1,y1,x2,y2,score,class`` in canvas
pixels (class -1: padding). Kept: rows scoring at least ``predict_score_threshold`` (chosen
on validation), best first; boxes are mapped back to image pixels. Writes
``file_name,category_id,category,bbox,score`` rows like `tl predict` (COCO bbox x,y,w,h).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def letterbox(image: Image.Image, height: int, width: int, pad: int) -> tuple[np.ndarray, tuple]:
    scale = min(width / image.width, height / image.height)
    new_w, new_h = round(image.width * scale), round(image.height * scale)
    x0, y0 = (width - new_w) // 2, (height - new_h) // 2
    canvas = np.full((height, width, 3), pad, dtype=np.uint8)
    resized = image.convert("RGB").resize((new_w, new_h), Image.Resampling.BILINEAR)
    canvas[y0 : y0 + new_h, x0 : x0 + new_w] = np.asarray(resized)
    return canvas.transpose(2, 0, 1), (scale, x0, y0)


def to_image(rows: np.ndarray, box: tuple, image: Image.Image) -> np.ndarray:
    scale, x0, y0 = box
    offset = np.array([x0, y0, x0, y0], dtype=np.float32)
    out = (rows[:, :4] - offset) / scale
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, image.width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, image.height)
    return out.astype(np.float32)


def files_of(root: Path) -> list[tuple[str, Path]]:
    if root.is_file():
        return [(root.name, root)]
    folder = root / "images" if (root / "images").is_dir() else root
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not found and folder != root:
        found = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    return [(p.relative_to(root).as_posix(), p) for p in found]


def main(model_path: str, data: str, out: str | None = None) -> None:
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["tl"])
    spec, labels = meta["input"], meta["labels"]
    pad = int(meta["preprocessing"]["letterbox"]["pad_value"])
    threshold = meta.get("predict_score_threshold")
    rows = []
    for name, path in files_of(Path(data)):
        with Image.open(path) as opened:
            opened.load()
            image = opened.convert("RGB")
        canvas, box = letterbox(image, int(spec["height"]), int(spec["width"]), pad)
        (detections,) = session.run(None, {spec["name"]: canvas[None]})
        found = detections[0][detections[0][:, 5] >= 0]
        if threshold is not None:
            found = found[found[:, 4] >= threshold]
        found = found[np.argsort(-found[:, 4], kind="stable")]
        boxes = to_image(found, box, image)
        for (x1, y1, x2, y2), (score, cls) in zip(boxes, found[:, 4:6], strict=True):
            bbox = [round(float(v), 2) for v in (x1, y1, x2 - x1, y2 - y1)]
            rows.append(
                [name, int(cls) + 1, labels[int(cls)], json.dumps(bbox), round(float(score), 5)]
            )
    with open(out, "w", newline="") if out else sys.stdout as fh:
        writer = csv.writer(fh)
        writer.writerow(["file_name", "category_id", "category", "bbox", "score"])
        writer.writerows(rows)


if __name__ == "__main__":
    main(*sys.argv[1:4])
