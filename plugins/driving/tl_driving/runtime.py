"""`tl predict` / `tl evaluate` with onnxruntime only: letterbox, run, map boxes back.

No torch here. The ONNX graph takes the letterboxed uint8 batch and returns padded
``(batch, max_det, 6)`` detections in canvas pixels; this module undoes the letterbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from tl.core import DataError, OnnxModel, Throughput

from .coco_eval import coco_ground_truth, coco_map
from .readers import list_images, read_dataset
from .records import ImageRecord, Letterbox, open_image

BATCH_SIZE = 8
DRAW_THRESHOLD = 0.3
COLOURS = [(255, 200, 0), (0, 220, 255), (255, 0, 200), (80, 255, 80), (255, 120, 40)]


def canvas_of(model: OnnxModel) -> tuple[int, int]:
    height, width = model.meta["input"]["height"], model.meta["input"]["width"]
    return int(height), int(width)


def detect(
    model: OnnxModel, records: list[ImageRecord], skip_bad: bool = False
) -> tuple[dict[int, np.ndarray], list[str]]:
    """Detections per ``image_id`` in original image pixels, and the skipped files."""
    height, width = canvas_of(model)
    input_name = model.input_names[0]
    results: dict[int, np.ndarray] = {}
    skipped: list[str] = []
    with Throughput(len(records), "images") as progress:
        for start in range(0, len(records), BATCH_SIZE):
            chunk, canvases, boxes = [], [], []
            for record in records[start : start + BATCH_SIZE]:
                try:
                    image = open_image(record.path)
                except DataError as exc:
                    if not skip_bad:
                        raise
                    skipped.append(exc.line())
                    continue
                box = Letterbox.fit(image.width, image.height, width, height)
                chunk.append(record)
                canvases.append(box.apply_image(image).transpose(2, 0, 1))
                boxes.append(box)
            if not chunk:
                continue
            output = model.run({input_name: np.stack(canvases)})[model.output_names[0]]
            for record, box, rows in zip(chunk, boxes, output, strict=True):
                rows = rows[rows[:, 5] >= 0].copy()
                rows[:, :4] = box.to_image(rows[:, :4], record.width, record.height)
                results[record.image_id] = rows
            progress.add(len(chunk))
    return results, skipped


def image_records(path: Path) -> list[ImageRecord]:
    """Images to predict on: one file, or every image under a folder (``images/`` first)."""
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = list_images(path / "images") or list_images(path)
    else:
        raise DataError("the data path does not exist", path, "check --data")
    if not files:
        raise DataError("no images found", path, "pass a folder of .jpg/.png images")
    root = path.parent if path.is_file() else path
    records = []
    for index, file in enumerate(files):
        try:
            with Image.open(file) as image:
                width, height = image.size
        except OSError:
            width = height = 0  # reported when decoded, so --skip-bad can count it
        records.append(
            ImageRecord(file, width, height, item=file.relative_to(root).as_posix(), image_id=index)
        )
    return records


def detections_frame(
    records: list[ImageRecord], results: dict[int, np.ndarray], labels: list[str]
) -> pd.DataFrame:
    """COCO-style rows: image_id, file_name, category_id (class + 1), bbox [x, y, w, h], score."""
    rows = []
    for record in records:
        for x1, y1, x2, y2, score, cls in results.get(record.image_id, np.zeros((0, 6))):
            rows.append(
                {
                    "image_id": record.image_id,
                    "file_name": record.item,
                    "category_id": int(cls) + 1,
                    "category": labels[int(cls)] if int(cls) < len(labels) else str(int(cls)),
                    "bbox": [
                        round(float(x1), 2),
                        round(float(y1), 2),
                        round(float(x2 - x1), 2),
                        round(float(y2 - y1), 2),
                    ],
                    "score": round(float(score), 5),
                }
            )
    columns = ["image_id", "file_name", "category_id", "category", "bbox", "score"]
    return pd.DataFrame(rows, columns=columns)


def draw_detections(
    image: Image.Image,
    rows: np.ndarray,
    labels: list[str],
    truth: np.ndarray | None = None,
    threshold: float = DRAW_THRESHOLD,
) -> Image.Image:
    """Predicted boxes in class colours with scores; true boxes (if given) in white."""
    image = image.convert("RGB")
    draw = ImageDraw.Draw(image)
    line = max(1, round(image.width / 320))
    for box in truth if truth is not None else []:
        draw.rectangle([float(v) for v in box], outline=(255, 255, 255), width=line)
    for x1, y1, x2, y2, score, cls in rows:
        if score < threshold:
            continue
        colour = COLOURS[int(cls) % len(COLOURS)]
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=line)
        name = labels[int(cls)] if int(cls) < len(labels) else str(int(cls))
        draw.text((x1 + 1, max(0, y1 - 10)), f"{name} {score:.2f}", fill=colour)
    return image


def predict(model: OnnxModel, path: Path, options: dict[str, Any]) -> pd.DataFrame:
    records = image_records(path)
    labels = list(model.meta.get("labels", []))
    results, skipped = detect(model, records, bool(options.get("skip_bad")))
    if options.get("draw"):
        out_dir = Path(options["draw"])
        for record in records:
            if record.image_id in results:
                target = out_dir / Path(record.item).with_suffix(".png")
                target.parent.mkdir(parents=True, exist_ok=True)
                draw_detections(open_image(record.path), results[record.image_id], labels).save(
                    target
                )
    frame = detections_frame(records, results, labels)
    frame.attrs["skipped"] = skipped
    return frame


def evaluate(model: OnnxModel, path: Path, options: dict[str, Any]) -> dict[str, Any]:
    found = read_dataset(path, bool(options.get("skip_bad")))
    labels = list(model.meta.get("labels", []))
    if found.labels != labels:
        raise DataError(
            f"the data's classes {found.labels} differ from the model's {labels}",
            path,
            "evaluate on data labelled with the model's classes (data.yaml names)",
        )
    results, skipped = detect(model, found.records, bool(options.get("skip_bad")))
    frame = detections_frame(found.records, results, labels)
    detections = [
        {"image_id": r.image_id, "category_id": r.category_id, "bbox": r.bbox, "score": r.score}
        for r in frame.itertuples()
    ]
    evaluated = [r for r in found.records if r.image_id in results]
    metrics = coco_map(coco_ground_truth(evaluated, labels), detections, labels)
    metrics.update(
        {
            "n_images": len(evaluated),
            "n_objects": int(sum(len(r.boxes) for r in evaluated)),
            "skipped": len(found.skipped) + len(skipped),
        }
    )
    return metrics
