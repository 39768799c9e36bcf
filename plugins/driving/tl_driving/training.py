"""Training-side helpers of the plugin: weight adaptation, export spec, test predictions."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import torch
from tl.core import ExportSpec, TLData

from .dataset import numpy_batch
from .postprocess import DetectorWithNms
from .records import PAD_VALUE, Letterbox

CLASS_KEYS = ("head.cls_logits.weight", "head.cls_logits.bias")
PARITY_BATCH = 4
PARITY_TOLERANCE = 1e-2  # pixels and scores; boxes are in the hundreds of pixels


def source_labels(meta: dict[str, Any]) -> list[str] | None:
    for candidate in (meta, meta.get("weights_meta") or {}):
        if isinstance(candidate.get("labels"), list):
            return [str(v) for v in candidate["labels"]]
    return None


def adapt_class_rows(
    state: dict[str, torch.Tensor], meta: dict[str, Any], model: Any, labels: list[str]
) -> dict[str, torch.Tensor]:
    """Carry classifier rows over by class *name*; classes new to the model keep their init,
    so the head survives a reordered or extended label set (and is dropped when none match)."""
    old = source_labels(meta)
    if old is None or old == list(labels) or not all(k in state for k in CLASS_KEYS):
        return state
    own = model.state_dict()
    state = dict(state)
    shared = [(labels.index(name), old.index(name)) for name in labels if name in old]
    for key in CLASS_KEYS:
        if not shared:
            state.pop(key)
            continue
        merged = own[key].clone()
        for new_row, old_row in shared:
            merged[new_row] = state[key][old_row]
        state[key] = merged
    return state


def empty_image_batch(data: TLData) -> np.ndarray:
    """One image without objects: a test image if there is one, else a blank canvas."""
    for split in (data.test, data.val, data.train):
        for index, record in enumerate(split.records):
            if len(record.boxes) == 0:
                return numpy_batch(split, [index])
    height, width = data.info["canvas"]
    return np.full((1, 3, height, width), PAD_VALUE, dtype=np.uint8)


def build_export_spec(model: Any, data: TLData) -> ExportSpec:
    """The detector and its NMS (`Detector.nms`) as one graph; the settings go in the metadata."""
    canvas = tuple(data.info["canvas"])
    module = DetectorWithNms(model.cpu().eval(), canvas).eval()
    settings = module.settings()
    test = data.test if len(data.test) else data.val
    batches = [
        {"images": numpy_batch(test, list(range(min(PARITY_BATCH, len(test)))))},
        {"images": empty_image_batch(data)},
    ]
    metadata = {
        "inputs": [{"name": "images", "column": "image file", "type": "image"}],
        "input": {
            "name": "images",
            "dtype": "uint8",
            "layout": "NCHW",
            "channels": "RGB",
            "height": canvas[0],
            "width": canvas[1],
        },
        "preprocessing": {
            "letterbox": {"pad_value": PAD_VALUE, "align": "center", "resample": "bilinear"},
            "normalisation": "inside the graph",
        },
        "output": {
            "name": "detections",
            "shape": ["batch", settings["max_det"], 6],
            "columns": ["x1", "y1", "x2", "y2", "score", "class"],
            "coordinates": "letterboxed canvas pixels",
            "padding": "rows with class -1 and score 0",
        },
        **settings,
    }
    return ExportSpec(
        module=module,
        batches=batches,
        input_names=["images"],
        output_names=["detections"],
        dynamic_axes={"images": {0: "batch"}, "detections": {0: "batch"}},
        metadata=metadata,
        compare=["detections"],
        agreement_output=None,
        tolerance=PARITY_TOLERANCE,
        canonical=rows_by_box,
    )


def rows_by_box(name: str, detections: np.ndarray) -> np.ndarray:
    """Each image's detections ordered by class and box instead of score: two detections
    whose scores tie within float error (torch and onnxruntime differ by ~1e-7) may then swap
    places without failing the parity check, while a missing or moved box still fails it."""
    if detections.ndim != 3:
        return detections
    out = np.empty_like(detections)
    for index, rows in enumerate(detections):
        out[index] = rows[np.lexsort((rows[:, 3], rows[:, 2], rows[:, 1], rows[:, 0], rows[:, 5]))]
    return out


def test_predictions(
    outputs: list[dict[str, Any]], data: TLData, threshold: float | None = None
) -> pd.DataFrame:
    """One row per test image: true and predicted counts, and the detections in image pixels
    that `tl predict` lists for it (the exported model's NMS and detection cap, scores at
    least ``threshold``: the one chosen on validation)."""
    height, width = data.info["canvas"]
    records = {r.image_id: r for r in data.test.records}
    rows = []
    for out in outputs:
        for detections, target in zip(out["detections"].numpy(), out["targets"], strict=True):
            record = records[int(target["image_id"])]
            kept = detections[detections[:, 5] >= 0]
            if threshold is not None:
                kept = kept[kept[:, 4] >= threshold]
            kept = kept.copy()
            box = Letterbox.fit(record.width, record.height, width, height)
            kept[:, :4] = box.to_image(kept[:, :4], record.width, record.height)
            rows.append(
                {
                    "item": record.item,
                    "n_objects": len(record.boxes),
                    "n_detections": len(kept),
                    "detections": json.dumps([[round(float(v), 3) for v in row] for row in kept]),
                }
            )
    return pd.DataFrame(rows)
