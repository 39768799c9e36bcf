"""A minimal image plugin for testing the core without any real plugin installed.

Data: 48×48 one-channel images whose class is where a bright blob sits, stored in one
``.npz`` file. Everything else goes through the core exactly as a real plugin would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tl.core import (
    Batches,
    ClassifierModel,
    DataError,
    ExportSpec,
    InputBatch,
    Plugin,
    Skipped,
    TLData,
    classification_metrics,
    create_backbone,
    softmax,
)
from torch import nn
from torch.utils.data import TensorDataset

LABELS = ["left", "right", "top"]
SIZE = 48


def make_images(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(LABELS), n)
    images = rng.normal(100, 20, size=(n, 1, SIZE, SIZE))
    centres = {0: (24, 10), 1: (24, 38), 2: (10, 24)}
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i, label in enumerate(labels):
        cy, cx = centres[int(label)]
        cy += rng.integers(-2, 3) + shift
        cx += rng.integers(-2, 3)
        images[i, 0] += 80 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 20.0)
    return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64)


class ToyPlugin(Plugin):
    name = "toy"
    description = "test plugin"
    task = "classification"
    default_backbone = "resnet10t"
    monitor = "accuracy"
    monitor_mode = "max"

    def demo(self, out_dir: Path, size: str = "small", seed: int = 0) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        images, labels = make_images(240 if size == "small" else 2000, seed)
        np.savez(out_dir / "data.npz", images=images, labels=labels)
        return out_dir

    def load(self, path: Path, options: dict[str, Any]) -> TLData:
        file = path / "data.npz" if path.is_dir() else path
        if not file.exists():
            raise DataError("no data.npz", path, "run the toy demo")
        with np.load(file) as npz:
            images, labels = npz["images"], npz["labels"]
        n = len(labels)
        cut1, cut2 = int(n * 0.6), int(n * 0.8)
        splits = ["train"] * cut1 + ["val"] * (cut2 - cut1) + ["test"] * (n - cut2)

        def subset(a: int, b: int) -> TensorDataset:
            return TensorDataset(torch.from_numpy(images[a:b]), torch.from_numpy(labels[a:b]))

        return TLData(
            train=subset(0, cut1),
            val=subset(cut1, cut2),
            test=subset(cut2, n),
            splits=pd.DataFrame({"item": range(n), "split": splits}),
            labels=LABELS,
            task="multiclass",
        )

    def build_model(self, spec: Any, data: TLData, options: dict[str, Any]) -> nn.Module:
        backbone = create_backbone(spec, image_size=SIZE, num_classes=0, in_chans=1)
        return ClassifierModel(backbone, len(LABELS), mean=(0.5,), std=(0.25,))

    def loss(self, outputs: Any, targets: Any) -> Any:
        return nn.functional.cross_entropy(outputs.float(), targets)

    def metrics(self, outputs: list[Any], data: TLData, split: str) -> dict[str, Any]:
        logits = np.concatenate([o["outputs"].numpy() for o in outputs])
        targets = np.concatenate([o["targets"].numpy() for o in outputs])
        return classification_metrics(softmax(logits), targets, LABELS)

    def predictions(self, outputs: list[Any], data: TLData, fitted: Any) -> pd.DataFrame:
        logits = np.concatenate([o["outputs"].numpy() for o in outputs])
        targets = np.concatenate([o["targets"].numpy() for o in outputs])
        first = len(data.splits) - len(data.test)
        return pd.DataFrame(
            {
                "item": range(first, first + len(targets)),
                "true": [LABELS[t] for t in targets],
                "predicted": [LABELS[i] for i in logits.argmax(1)],
            }
        )

    def export_spec(self, model: Any, data: TLData, fitted: Any, run_dir: Path) -> ExportSpec:
        images = data.test.tensors[0].numpy()

        class Probabilities(nn.Module):
            def __init__(self, inner: nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, image: torch.Tensor) -> torch.Tensor:
                return torch.softmax(self.inner(image), dim=1)

        return ExportSpec(
            module=Probabilities(model),
            batches=[{"image": images[:16]}, {"image": images[16:21]}],
            input_names=["image"],
            output_names=["probabilities"],
            dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
            agreement_output="probabilities",
        )

    # runtime: a data.npz (evaluate: with its labels), or a folder of one-image .npy files
    item_noun = "images"

    def read_batches(
        self, model: Any, path: Path, options: Any, batch_size: int, labelled: bool = False
    ) -> Batches:
        path = Path(path)
        if (path / "data.npz").exists() or path.suffix == ".npz":
            with np.load(path / "data.npz" if path.is_dir() else path) as npz:
                images, labels = npz["images"], npz["labels"]
            items = pd.DataFrame({"item": [str(i) for i in range(len(images))]})
            if labelled:
                items["label"] = [LABELS[i] for i in labels]
            return Batches(_npz_batches(images, items, batch_size), total=len(images))
        if labelled:
            raise DataError("labelled toy data is a data.npz", path, "pass the toy demo folder")
        files = sorted(path.glob("*.npy"))
        if not files:
            raise DataError("no data.npz or .npy images", path, "run the toy demo")
        return Batches(_npy_batches(files, batch_size), total=len(files))

    def decode(self, model: Any, batch: InputBatch, outputs: dict, options: Any) -> pd.DataFrame:
        probs = outputs["probabilities"].astype(np.float64)
        rows = batch.items.reset_index(drop=True).copy()
        rows["predicted"] = [LABELS[i] for i in probs.argmax(1)]
        for i, name in enumerate(LABELS):
            rows[f"p_{name}"] = probs[:, i].round(6)
        return rows

    def score(self, model: Any, rows: pd.DataFrame, extras: list, options: Any) -> dict:
        return {"accuracy": float((rows["predicted"] == rows["label"]).mean()), "n": len(rows)}


def _npz_batches(images: np.ndarray, items: pd.DataFrame, size: int) -> Iterator[InputBatch]:
    for start in range(0, len(images), size):
        chunk = slice(start, start + size)
        yield InputBatch({"image": images[chunk]}, items.iloc[chunk])


def _npy_batches(files: list[Path], size: int) -> Iterator[InputBatch | Skipped]:
    names: list[str] = []
    arrays: list[np.ndarray] = []
    for i, file in enumerate(files):
        try:
            image = np.load(file)
            if image.shape != (1, SIZE, SIZE):
                raise ValueError(f"shape {image.shape}, not (1, {SIZE}, {SIZE})")
        except (OSError, ValueError) as exc:
            yield Skipped(file.name, f"not a toy image: {str(exc)[:80]}")
        else:
            names.append(file.name)
            arrays.append(image.astype(np.uint8))
        if names and (len(names) == size or i == len(files) - 1):
            yield InputBatch({"image": np.stack(arrays)}, pd.DataFrame({"item": names}))
            names, arrays = [], []


def toy_options(data, out, **overrides):
    options = {
        "data": str(data),
        "weights": "none",
        "epochs": 4,
        "batch_size": 24,
        "lr": 2e-3,
        "out": str(out),
        "seed": 0,
        "device": "cpu",
    }
    options.update(overrides)
    return options
