"""`tl predict` / `tl evaluate` on medical models: images in, rows out — no torch here.

The core (`tl.core.inference`) runs the model, shows progress, counts skipped items and
writes the output; this module reads images a batch at a time (`read_batches`), turns
probabilities into rows (`decode`) and labelled rows into metrics (`score`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tl.core import Batches, DataError, InputBatch, OnnxModel, Skipped, read_table, require_column

from .preprocess import parse_window, to_model_input
from .readers import has_dicom_preamble, is_image_path, read_image

#: rows of decoded output keep probabilities to this many decimals (evaluate: all of them)
DECIMALS = 6


def list_inputs(path: Path) -> list[tuple[str, Path]]:
    """(item name, file) for an image file, a folder (recursive) or a CSV with a path column."""
    if not path.exists():
        raise DataError("input not found", path, "check the --data path")
    if path.is_file() and path.suffix.lower() == ".csv":
        frame = read_table(path, noun="image list", as_text=True, suffixes=(".csv",))
        require_column(frame, "path", path, "add a path column with image file names")
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


def read_batches(
    model: OnnxModel, path: Path, options: Mapping[str, Any], batch_size: int, labelled: bool
) -> Batches:
    """Batches of ``{"image": uint8 NCHW}`` with an ``item`` column (and, labelled, the
    item's ``labels``); an unreadable image is a `Skipped` under ``skip_bad``, else its
    DataError. Labelled data is indexed first (its layout checked, its labels known to the
    model); items the index already had to leave out come first as `Skipped`."""
    skip_bad = bool(options.get("skip_bad"))
    window = _window(model, options)
    if not labelled:
        inputs = [(name, file, None) for name, file in list_inputs(path)]
        return Batches(_batches(model, inputs, window, skip_bad, batch_size), total=len(inputs))
    skipped, inputs = _labelled_inputs(model, path, skip_bad)
    entries = _chain(skipped, _batches(model, inputs, window, skip_bad, batch_size))
    return Batches(entries, total=len(skipped) + len(inputs))


def _window(model: OnnxModel, options: Mapping[str, Any]) -> tuple[float, float] | None:
    given = parse_window(options.get("window"))
    if given is not None:
        return given
    saved = model.meta.get("preprocessing", {}).get("window")
    return (float(saved[0]), float(saved[1])) if saved else None


def _labelled_inputs(
    model: OnnxModel, path: Path, skip_bad: bool
) -> tuple[list[Skipped], list[tuple[str, Path, tuple[str, ...]]]]:
    from .dataset_index import scan

    labels: list[str] = list(model.meta["labels"])
    index = scan(path, skip_bad=skip_bad)
    unknown = sorted(set(index.labels) - set(labels))
    if unknown:
        raise DataError(
            f"label '{unknown[0]}' is not one the model knows",
            path,
            f"use labels among {', '.join(labels)}",
        )
    skipped = [Skipped(item, reason) for item, reason in index.skipped]
    frame = index.frame
    inputs = [
        (item, Path(file), tuple(names))
        for item, file, names in zip(frame["item"], frame["path"], frame["labels"], strict=True)
    ]
    return skipped, inputs


def _chain(first: Sequence[Skipped], rest: Iterator[InputBatch | Skipped]) -> Iterator[Any]:
    yield from first
    yield from rest


def _batches(
    model: OnnxModel,
    inputs: list[tuple[str, Path, tuple[str, ...] | None]],
    window: tuple[float, float] | None,
    skip_bad: bool,
    batch_size: int,
) -> Iterator[InputBatch | Skipped]:
    spec = model.meta["input"]
    size, channels = int(spec["height"]), int(spec["channels"])
    rows: list[dict[str, Any]] = []
    arrays: list[np.ndarray] = []
    for name, file, labels in inputs:
        try:
            pixels, _ = read_image(file, window=window)
        except DataError as exc:
            if not skip_bad:
                raise
            yield Skipped(name, exc.what)
            continue
        rows.append({"item": name} if labels is None else {"item": name, "labels": labels})
        arrays.append(to_model_input(pixels, size, channels))
        if len(arrays) == batch_size:
            yield InputBatch({"image": np.stack(arrays)}, pd.DataFrame(rows))
            rows, arrays = [], []
    if arrays:
        yield InputBatch({"image": np.stack(arrays)}, pd.DataFrame(rows))


def prediction_frame(
    items: list[str],
    probs: np.ndarray,
    labels: list[str],
    multilabel: bool,
    threshold: float | None,
    decimals: int | None = DECIMALS,
) -> pd.DataFrame:
    """``item``, ``predicted`` (multi-label: names joined by ``|``; binary: at the fitted
    threshold; else the argmax) and ``p_<label>`` per label."""
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
        frame[f"p_{name}"] = probs[:, i] if decimals is None else probs[:, i].round(decimals)
    return frame


def decode(model: OnnxModel, batch: InputBatch, outputs: dict[str, Any]) -> pd.DataFrame:
    """Rows of one batch; labelled batches keep their ``labels`` and full precision."""
    meta = model.meta
    labelled = "labels" in batch.items.columns
    frame = prediction_frame(
        batch.items["item"].tolist(),
        outputs["probabilities"],
        list(meta["labels"]),
        bool(meta.get("multilabel")),
        meta.get("threshold"),
        decimals=None if labelled else DECIMALS,
    )
    if labelled:
        frame["labels"] = batch.items["labels"].to_numpy()
    return frame


def score(model: OnnxModel, rows: pd.DataFrame) -> dict[str, Any]:
    """Classification metrics of every readable labelled image (the core adds ``skipped``)."""
    from tl.core import classification_metrics

    meta = model.meta
    labels: list[str] = list(meta["labels"])
    multilabel = bool(meta.get("multilabel"))
    probs = rows[[f"p_{name}" for name in labels]].to_numpy(dtype=np.float64)
    position = {name: i for i, name in enumerate(labels)}
    if multilabel:
        targets = np.zeros((len(rows), len(labels)), dtype=int)
        for k, names in enumerate(rows["labels"]):
            for name in names:
                targets[k, position[name]] = 1
    else:
        targets = np.array([position[names[0]] for names in rows["labels"]])
    metrics = classification_metrics(
        probs, targets, labels, multilabel=multilabel, threshold=meta.get("threshold")
    )
    metrics.update({"plugin": "medical", "n": len(rows), "model": str(model.path)})
    return metrics
