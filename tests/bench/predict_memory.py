"""Bounded memory of `tl predict` over a folder of many images (medical plugin).

    python tests/bench/predict_memory.py [--n 20000] [--image-size 64] [--batch-size 64]
                                         [--limit-mb 2048] [--keep DIR]

Writes N small grayscale PNGs, exports a random-init medical-style classifier (uint8 in,
normalisation + softmax in the graph, the medical metadata), runs ``tl predict MODEL --data
FOLDER --out preds.csv`` in a subprocess and reports its peak RSS. `tl predict` decodes,
resizes and runs one batch at a time, so memory must not grow with N. Target: < 2 GB.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import RUNNER, peak_rss_mb, result  # noqa: E402


def write_images(folder: Path, n: int, size: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size * 2, size * 2), dtype=np.uint8)
    for i in range(n):
        y, x = rng.integers(0, size, 2)
        Image.fromarray(base[y : y + size, x : x + size]).save(folder / f"img{i:06d}.png")


def export_model(path: Path, size: int) -> None:
    import torch
    from tl.core.backbones import BackboneSpec, create_backbone
    from tl.core.export import export_onnx
    from tl.core.models import ClassifierModel
    from tl.core.plugin import ExportSpec
    from torch import nn

    class Probabilities(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.inner(image)
            return logits, logits.softmax(-1)

    torch.manual_seed(0)
    net = create_backbone(BackboneSpec("resnet10t", "none"), num_classes=0, in_chans=1)
    module = Probabilities(ClassifierModel(net, 2, mean=(0.5,), std=(0.25,))).eval()
    batch = np.random.default_rng(0).integers(0, 256, (4, 1, size, size), dtype=np.uint8)
    labels = ["normal", "abnormal"]
    spec = ExportSpec(
        module=module,
        batches=[{"image": batch}],
        input_names=["image"],
        output_names=["logits", "probabilities"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}, "probabilities": {0: "batch"}},
        compare=["probabilities"],
        agreement_output="probabilities",
    )
    meta = {
        "plugin": "medical",
        "labels": labels,
        "multilabel": False,
        "threshold": None,
        "input": {"name": "image", "dtype": "uint8", "channels": 1, "height": size, "width": size},
        "preprocessing": {"window": None},
    }
    export_onnx(spec, path, meta)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit-mb", type=float, default=2048)
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (images, model)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        images, model = work / f"images-{args.n}", work / "model.onnx"
        if not images.exists() or len(list(images.iterdir())) != args.n:
            t0 = time.time()
            write_images(images, args.n, args.image_size)
            print(f"wrote {args.n} images in {time.time() - t0:.1f}s", file=sys.stderr)
        if not model.exists():
            export_model(model, args.image_size)
        out = work / "preds.csv"
        cmd = [sys.executable, "-c", RUNNER, "predict", str(model), "--data", str(images)]
        cmd += ["--out", str(out), "--device", "cpu", "--batch-size", str(args.batch_size)]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.time() - t0
        if proc.returncode != 0:
            raise SystemExit(f"tl predict failed: {proc.stderr[-2000:]}")
        rows = sum(1 for _ in out.open()) - 1
    peak_mb = peak_rss_mb(proc.stderr)
    ok = peak_mb < args.limit_mb and rows == args.n
    return result(
        "predict_memory",
        peak_mb,
        args.limit_mb,
        peak_mb / args.limit_mb,
        "< 1 (peak RSS/2 GB)",
        ok,
        unit="MB",
        images=args.n,
        rows=rows,
        images_per_second=round(args.n / seconds, 1),
    )


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
