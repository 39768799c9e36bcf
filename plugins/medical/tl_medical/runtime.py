"""Inference with onnxruntime on folders of images — no torch on this path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tl.core import DataError, OnnxModel, Throughput

from .preprocess import to_model_input
from .readers import has_dicom_preamble, is_image_path, read_image


def list_inputs(path: Path) -> list[tuple[str, Path]]:
    """(item name, file) for an image file, a folder (recursive) or a CSV with a path column."""
    if not path.exists():
        raise DataError("input not found", path, "check the --data path")
    if path.is_file() and path.suffix.lower() == ".csv":
        frame = pd.read_csv(path)
        if "path" not in frame.columns:
            raise DataError(
                "the CSV has no 'path' column", path, "add a path column with image file names"
            )
        return [(str(p), (path.parent / str(p)).resolve()) for p in frame["path"]]
    if path.is_file():
        return [(path.name, path)]
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and (is_image_path(p) or (not p.suffix and has_dicom_preamble(p)))
    )
    if not files:
        raise DataError(
            "no images in the folder", path, "pass a folder of PNG/JPEG/TIFF/BMP/DICOM files"
        )
    return [(str(p.relative_to(path)), p) for p in files]


def _window(model: OnnxModel, options: dict[str, Any]) -> tuple[float, float] | None:
    text = options.get("window")
    if text:
        center, width = (float(v) for v in str(text).split(","))
        return center, width
    saved = model.meta.get("preprocessing", {}).get("window")
    return tuple(saved) if saved else None


def _batches(
    model: OnnxModel,
    inputs: list[tuple[str, Path]],
    options: dict[str, Any],
    skipped: list[tuple[str, str]],
) -> Iterator[tuple[list[str], np.ndarray]]:
    spec = model.meta["input"]
    window = _window(model, options)
    size, channels = int(spec["height"]), int(spec["channels"])
    batch_size = int(options.get("batch_size") or 64)
    names: list[str] = []
    arrays: list[np.ndarray] = []
    with Throughput(len(inputs), "images") as progress:
        for name, file in inputs:
            try:
                pixels, _ = read_image(file, window=window)
            except DataError as exc:
                if not options.get("skip_bad"):
                    raise
                skipped.append((name, exc.what))
                continue
            names.append(name)
            arrays.append(to_model_input(pixels, size, channels))
            if len(arrays) == batch_size:
                yield names, np.stack(arrays)
                progress.add(len(names))
                names, arrays = [], []
        if arrays:
            yield names, np.stack(arrays)
            progress.add(len(names))


def prediction_frame(
    items: list[str],
    probs: np.ndarray,
    labels: list[str],
    multilabel: bool,
    threshold: float | None,
) -> pd.DataFrame:
    probs = np.asarray(probs, dtype=np.float64)
    if multilabel:
        predicted = [
            "|".join(n for n, p in zip(labels, row, strict=True) if p >= 0.5) for row in probs
        ]
    elif len(labels) == 2 and threshold is not None:
        predicted = [labels[int(p >= threshold)] for p in probs[:, 1]]
    else:
        predicted = [labels[i] for i in probs.argmax(axis=1)]
    frame = pd.DataFrame({"item": items, "predicted": predicted})
    for i, name in enumerate(labels):
        frame[f"p_{name}"] = probs[:, i].round(6)
    return frame


def _run(
    model: OnnxModel, path: Path, options: dict[str, Any]
) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    skipped: list[tuple[str, str]] = []
    items: list[str] = []
    chunks: list[np.ndarray] = []
    for names, batch in _batches(model, list_inputs(path), options, skipped):
        chunks.append(model.run({"image": batch})["probabilities"])
        items += names
    if not chunks:
        raise DataError("no readable image", path, "check the files")
    return items, np.concatenate(chunks), skipped


def predict_folder(model: OnnxModel, path: Path, options: dict[str, Any]) -> pd.DataFrame:
    items, probs, skipped = _run(model, path, options)
    meta = model.meta
    frame = prediction_frame(
        items, probs, meta["labels"], bool(meta.get("multilabel")), meta.get("threshold")
    )
    if skipped:
        import sys

        print(
            f"skipped {len(skipped)} unreadable item(s): "
            + "; ".join(f"{n} ({r})" for n, r in skipped[:5]),
            file=sys.stderr,
        )
    return frame


def evaluate_folder(model: OnnxModel, path: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Labelled data in the training layouts (class folders or manifest) → metrics."""
    from tl.core.metrics import classification_metrics

    from .dataset_index import scan

    meta = model.meta
    labels: list[str] = list(meta["labels"])
    multilabel = bool(meta.get("multilabel"))
    index = scan(path, skip_bad=bool(options.get("skip_bad")))
    unknown = sorted(set(index.labels) - set(labels))
    if unknown:
        raise DataError(
            f"label '{unknown[0]}' is not one the model knows",
            path,
            f"use labels among {', '.join(labels)}",
        )
    frame = index.frame
    paths = {str(Path(p)): row for row, p in enumerate(frame["path"])}
    inputs = [(str(Path(p)), Path(p)) for p in frame["path"]]
    skipped: list[tuple[str, str]] = []
    items: list[str] = []
    chunks = []
    for names, batch in _batches(model, inputs, options, skipped):
        chunks.append(model.run({"image": batch})["probabilities"])
        items += names
    probs = np.concatenate(chunks)
    rows = [paths[i] for i in items]
    position = {n: i for i, n in enumerate(labels)}
    if multilabel:
        targets = np.zeros((len(rows), len(labels)), dtype=int)
        for k, r in enumerate(rows):
            for name in frame["labels"].iloc[r]:
                targets[k, position[name]] = 1
    else:
        targets = np.array([position[frame["labels"].iloc[r][0]] for r in rows])
    metrics = classification_metrics(
        probs, targets, labels, multilabel=multilabel, threshold=meta.get("threshold")
    )
    metrics.update(
        {
            "plugin": "medical",
            "n": len(rows),
            "skipped": len(skipped) + len(index.skipped),
            "model": str(model.path),
        }
    )
    return metrics
