"""`tl predict` / `tl evaluate` hooks with onnxruntime only: letterbox, run, map boxes back.

No torch here. `read_batches` letterboxes images into the uint8 batches the ONNX graph
takes; the graph returns padded ``(batch, max_det, 6)`` detections in canvas pixels, which
`decode` maps back to each image's pixels (one COCO-style row per detection); `score` is
COCO mAP of every row against the labels. The core (``tl.core.inference``) runs the model,
shows progress, counts skipped images and writes the rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from tl.core import Batches, DataError, InputBatch, OnnxModel, Skipped

from .coco_eval import coco_ground_truth, coco_map
from .readers import list_images, read_dataset
from .records import ImageRecord, Letterbox, item_name, open_image, skipped_image

DRAW_THRESHOLD = 0.3
COLOURS = [(255, 200, 0), (0, 220, 255), (255, 0, 200), (80, 255, 80), (255, 120, 40)]
COLUMNS = ["image_id", "file_name", "category_id", "category", "bbox", "score"]


def canvas_of(model: OnnxModel) -> tuple[int, int]:
    height, width = model.meta["input"]["height"], model.meta["input"]["width"]
    return int(height), int(width)


def image_records(path: Path) -> list[ImageRecord]:
    """Images to predict on: one file, or every image under a folder (``images/`` first).

    Sizes are left at 0 here: each image is decoded once, in its batch."""
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = list_images(path / "images") or list_images(path)
    else:
        raise DataError("the data path does not exist", path, "check --data")
    if not files:
        raise DataError("no images found", path, "pass a folder of .jpg/.png images")
    return [
        ImageRecord(file, 0, 0, item=item_name(file, path), image_id=index)
        for index, file in enumerate(files)
    ]


def labelled_records(model: OnnxModel, path: Path, skip_bad: bool) -> tuple[list, list]:
    """(records, skipped) of a labelled dataset whose classes are the model's."""
    found = read_dataset(path, skip_bad)
    labels = list(model.meta.get("labels", []))
    if found.labels != labels:
        raise DataError(
            f"the data's classes {found.labels} differ from the model's {labels}",
            path,
            "evaluate on data labelled with the model's classes (data.yaml names)",
        )
    return found.records, found.skipped


def read_batches(
    model: OnnxModel,
    path: Path,
    options: Mapping[str, Any],
    batch_size: int,
    labelled: bool = False,
) -> Batches:
    """Letterboxed uint8 batches of the images under ``path``; ``extra`` holds each batch's
    `ImageRecord` list (sizes, and the true boxes when ``labelled``)."""
    skip_bad = bool(options.get("skip_bad"))
    if labelled:
        records, skipped = labelled_records(model, Path(path), skip_bad)
    else:
        records, skipped = image_records(Path(path)), []
    stream = _batches(model, records, skipped, skip_bad, batch_size)
    return Batches(stream, total=len(records) + len(skipped))


def _batches(
    model: OnnxModel,
    records: list[ImageRecord],
    skipped: list[Skipped],
    skip_bad: bool,
    batch_size: int,
) -> Iterator[InputBatch | Skipped]:
    yield from skipped
    height, width = canvas_of(model)
    input_name = model.input_names[0]
    for start in range(0, len(records), batch_size):
        chunk, canvases = [], []
        for record in records[start : start + batch_size]:
            try:
                image = open_image(record.path)
            except DataError as exc:
                if not skip_bad:
                    raise
                yield skipped_image(record.item, record.path, exc)
                continue
            record = dataclasses.replace(record, width=image.width, height=image.height)
            box = Letterbox.fit(image.width, image.height, width, height)
            canvases.append(box.apply_image(image).transpose(2, 0, 1))
            chunk.append(record)
        if chunk:
            items = pd.DataFrame(
                {"image_id": [r.image_id for r in chunk], "file_name": [r.item for r in chunk]}
            )
            yield InputBatch({input_name: np.stack(canvases)}, items, extra=chunk)


def score_threshold(model: OnnxModel, options: Mapping[str, Any]) -> float | None:
    """``--score-threshold``, else for `tl predict` the one chosen on the run's validation
    split (ONNX metadata; models exported before it have none), for `tl evaluate` none."""
    given = options.get("score_threshold")
    if given is not None:
        return float(given)
    if getattr(options, "command", "predict") == "evaluate":
        return None
    chosen = model.meta.get("predict_score_threshold")
    return None if chosen is None else float(chosen)


def image_detections(
    model: OnnxModel,
    records: list[ImageRecord],
    output: np.ndarray,
    threshold: float | None = None,
    max_detections: int | None = None,
) -> list[np.ndarray]:
    """Each image's ``(n, 6)`` detections (padding dropped; at least ``threshold``, the
    best ``max_detections``) in its own pixels."""
    height, width = canvas_of(model)
    results = []
    for record, rows in zip(records, output, strict=True):
        rows = rows[rows[:, 5] >= 0]
        if threshold is not None:
            rows = rows[rows[:, 4] >= threshold]
        rows = rows[np.argsort(-rows[:, 4], kind="stable")][:max_detections].copy()
        box = Letterbox.fit(record.width, record.height, width, height)
        rows[:, :4] = box.to_image(rows[:, :4], record.width, record.height)
        results.append(rows)
    return results


def decode(
    model: OnnxModel, batch: InputBatch, outputs: dict[str, Any], options: Mapping[str, Any]
) -> pd.DataFrame:
    """One row per detection (``--score-threshold``, ``--max-detections``); with ``--draw``
    each image with those boxes as a PNG too."""
    labels = list(model.meta.get("labels", []))
    records = batch.extra
    threshold = score_threshold(model, options)
    limit = options.get("max_detections")
    results = image_detections(
        model, records, outputs[model.output_names[0]], threshold,
        None if limit is None else int(limit),
    )  # fmt: skip
    if options.get("draw"):
        out_dir = Path(options["draw"])
        shown = DRAW_THRESHOLD if threshold is None else threshold
        for record, rows in zip(records, results, strict=True):
            target = out_dir / Path(record.item).with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            draw_detections(open_image(record.path), rows, labels, threshold=shown).save(target)
    return detections_frame(records, results, labels)


def score(
    model: OnnxModel, rows: pd.DataFrame, extras: list[Any], options: Mapping[str, Any]
) -> dict[str, Any]:
    """COCO mAP of all rows against the true boxes of every image that was read."""
    labels = list(model.meta.get("labels", []))
    evaluated = [record for records in extras for record in records]
    detections = [
        {"image_id": r.image_id, "category_id": r.category_id, "bbox": r.bbox, "score": r.score}
        for r in rows.itertuples()
    ]
    metrics = coco_map(coco_ground_truth(evaluated, labels), detections, labels)
    metrics["n_images"] = len(evaluated)
    metrics["n_objects"] = int(sum(len(r.boxes) for r in evaluated))
    return metrics


def detections_frame(
    records: list[ImageRecord], results: list[np.ndarray], labels: list[str]
) -> pd.DataFrame:
    """COCO-style rows: image_id, file_name, category_id (class + 1), bbox [x, y, w, h], score."""
    rows = []
    for record, found in zip(records, results, strict=True):
        for x1, y1, x2, y2, confidence, cls in found:
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
                    "score": round(float(confidence), 5),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


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
    for x1, y1, x2, y2, confidence, cls in rows:
        if confidence < threshold:
            continue
        colour = COLOURS[int(cls) % len(COLOURS)]
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=line)
        name = labels[int(cls)] if int(cls) < len(labels) else str(int(cls))
        draw.text((x1 + 1, max(0, y1 - 10)), f"{name} {confidence:.2f}", fill=colour)
    return image
