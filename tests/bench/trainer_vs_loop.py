"""`tl run medical` vs a hand-written timm loop: images per second and time to accuracy.

    python tests/bench/trainer_vs_loop.py [--rows 32-aug,32-noaug,96] [--epochs 3]
                                          [--repeats 2] [--n 1797] [--threads 2]

Data: sklearn's 1,797 8x8 digits upscaled to 32 px PNGs in medical's folder-per-class
layout (offline, real images). Ours is the whole `tl run medical` in this process (resnet10t,
batch 64, ``--strategy full --weights none --patience 99``), timed by its own
``train_seconds``; the loop trains the same timm model with AdamW on the same training items
(the run's splits.csv), one validation pass per epoch included in its time. The two
alternate in ABBA order (ours, loop, loop, ours …) so that load on a shared machine and
the order within a pair hit both alike; the fastest of each is kept. images/s = training
images x epochs / seconds; ``to 0.95``: seconds from the start of training until
validation accuracy first reaches 0.95 (``-`` never).
Target: ours >= 0.95x the loop at 32 px with default augmentation and at 96 px.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _common import result  # noqa: E402

ROWS = {
    "32-aug": ("32 px, default augmentation", 32, True),
    "32-noaug": ("32 px, --no-augment", 32, False),
    "96": ("96 px, default augmentation", 96, True),
}
TARGET = 0.95
ACCURACY = 0.95


def write_digits(root: Path, n: int | None = None) -> Path:
    """sklearn's digits as 32 px grayscale PNGs, ``root/<digit>/scanNNNN.png``."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images[:n], digits.target[:n], strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (image * (255 / 16)).round().astype(np.uint8)
        Image.fromarray(pixels).resize((32, 32), Image.Resampling.BILINEAR).save(
            folder / f"scan{i:04d}.png"
        )
    return root


class _Curve:
    """Trainer callback: (seconds since the fit started, validation accuracy) per epoch."""

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def on_fit_start(self, trainer: Any, state: Any) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, trainer: Any, state: Any) -> None:
        accuracy = float(state.val_metrics.get("accuracy", float("nan")))
        self.points.append((time.perf_counter() - self.started, accuracy))


def ours(data: Path, out: Path, size: int, augment: bool, args: argparse.Namespace) -> dict:
    from tl.core.progress import ProgressReporter
    from tl.core.run import run_plugin
    from tl_medical.plugin import MedicalPlugin

    curve = _Curve()
    options = {
        "data": str(data),
        "out": str(out),
        "backbone": args.backbone,
        "weights": "none",
        "strategy": "full",
        "image_size": size,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "patience": 99,
        "augment": augment,
        "device": args.device,
    }
    reporter = ProgressReporter(stream=io.StringIO())
    run_dir = run_plugin(MedicalPlugin(), options, reporter, callbacks=[curve])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "seconds": float(metrics["train_seconds"]),
        "n_train": int(metrics["n_train"]),
        "curve": curve.points,
        "run_dir": run_dir,
    }


def _read_split(data: Path, run_dir: Path, split: str, size: int) -> tuple[torch.Tensor, ...]:
    import pandas as pd
    from PIL import Image

    frame = pd.read_csv(run_dir / "splits.csv")
    frame = frame[frame["split"] == split]
    labels = sorted(pd.read_csv(run_dir / "splits.csv")["label"].astype(str).unique())
    images = [
        np.asarray(
            Image.open(data / item).convert("L").resize((size, size), Image.Resampling.BILINEAR)
        )
        for item in frame["item"]
    ]
    targets = [labels.index(str(label)) for label in frame["label"]]
    return torch.from_numpy(np.stack(images)[:, None]), torch.tensor(targets), len(labels)


def hand_loop(data: Path, run_dir: Path, size: int, args: argparse.Namespace) -> dict:
    """What a user writes by hand: timm model, AdamW, shuffle, one validation pass an epoch."""
    import timm
    from torch.utils.data import DataLoader, TensorDataset

    x_train, y_train, classes = _read_split(data, run_dir, "train", size)
    x_val, y_val, _ = _read_split(data, run_dir, "val", size)
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    torch.manual_seed(0)
    model = timm.create_model(args.backbone, pretrained=False, num_classes=classes, in_chans=1)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    train = DataLoader(TensorDataset(x_train, y_train), args.batch_size, shuffle=True)
    val = DataLoader(TensorDataset(x_val, y_val), args.batch_size)
    points = []
    started = time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        for images, targets in train:
            images = (images.to(device).float() / 255 - 0.5) / 0.25
            loss = nn.functional.cross_entropy(model(images), targets.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.inference_mode():
            for images, targets in val:
                images = (images.to(device).float() / 255 - 0.5) / 0.25
                correct += int((model(images).argmax(1).cpu() == targets).sum())
        points.append((time.perf_counter() - started, correct / len(y_val)))
    return {"seconds": time.perf_counter() - started, "n_train": len(y_train), "curve": points}


def time_to(curve: list[tuple[float, float]], accuracy: float = ACCURACY) -> float | None:
    return next((t for t, a in curve if a >= accuracy), None)


def measure_row(key: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    title, size, augment = ROWS[key]
    best: dict[str, dict] = {}
    run_dir = None
    for repeat in range(args.repeats):
        runs: dict[str, dict] = {}
        # ABBA order (ours, loop, loop, ours …): whatever runs second in a pair is not
        # always the same one; the loop trains on the split of the latest `tl run`
        for name in ("ours", "loop") if repeat % 2 == 0 else ("loop", "ours"):
            if name == "ours":
                runs[name] = ours(root / "digits", root / f"runs-{key}", size, augment, args)
                run_dir = runs[name]["run_dir"]
            else:
                runs[name] = hand_loop(root / "digits", run_dir, size, args)
        for name, run in runs.items():
            run["images_s"] = run["n_train"] * args.epochs / run["seconds"]
            print(
                f"{title} #{repeat + 1} {name}: {run['images_s']:.1f} img/s, "
                f"val accuracy {run['curve'][-1][1]:.4f}",
                file=sys.stderr,
                flush=True,
            )
            if name not in best or run["seconds"] < best[name]["seconds"]:
                best[name] = run
    return {
        "row": title,
        "key": key,
        "loop": best["loop"],
        "ours": best["ours"],
        "ratio": best["ours"]["images_s"] / best["loop"]["images_s"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    def fmt_t(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} s"

    lines = [
        f"| input | hand-written loop | `tl run` | ratio | loop: to {ACCURACY} / final acc "
        f"| `tl run`: to {ACCURACY} / final acc |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        loop, us = row["loop"], row["ours"]
        lines.append(
            f"| {row['row']} | {loop['images_s']:.1f} img/s | {us['images_s']:.1f} img/s "
            f"| {row['ratio']:.3f} | {fmt_t(time_to(loop['curve']))} / {loop['curve'][-1][1]:.3f} "
            f"| {fmt_t(time_to(us['curve']))} / {us['curve'][-1][1]:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--n", type=int, default=None, help="first N digits (default all)")
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    keys = [k for k in args.rows.split(",") if k]
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_digits(root / "digits", args.n)
            rows = [measure_row(key, root, args) for key in keys]
    finally:
        torch.set_num_threads(threads)
    print(table(rows))
    judged = [r for r in rows if r["key"] != "32-noaug"] or rows
    worst_row = min(judged, key=lambda r: r["ratio"])
    worst = worst_row["ratio"]
    return result(
        "trainer_vs_loop",
        worst_row["ours"]["images_s"],
        worst_row["loop"]["images_s"],
        worst,
        f">= {TARGET} (32 px default aug, 96 px)",
        worst >= TARGET,
        unit="img/s ratio",
        rows={r["key"]: round(r["ratio"], 3) for r in rows},
    )


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
