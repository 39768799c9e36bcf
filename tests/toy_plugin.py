"""A minimal image plugin for testing the core without any real plugin installed.

Data: 48×48 one-channel images whose class is where a bright blob sits, stored in one
``.npz`` file. Everything else goes through the core exactly as a real plugin would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tl.core import ClassifierModel, DataError, ExportSpec, Plugin, TLData, create_backbone
from tl.core.calibration import softmax
from tl.core.metrics import classification_metrics
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

    def export_spec(self, model: Any, data: TLData, extra: dict[str, Any]) -> ExportSpec:
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

    def predict(self, model: Any, path: Path, options: dict[str, Any]) -> pd.DataFrame:
        with np.load(path / "data.npz") as npz:
            images = npz["images"]
        probs = model.run({"image": images})["probabilities"]
        return pd.DataFrame(
            {"item": range(len(images)), "predicted": [LABELS[i] for i in probs.argmax(1)]}
        )


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
