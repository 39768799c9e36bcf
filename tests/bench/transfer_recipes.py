"""Few-label transfer: the default recipe (auto, LP-FT) against scratch, full, gradual and
llrd on proxy tasks, over seeds.

    python tests/bench/transfer_recipes.py [--proxies digits,shapes,xray] [--seeds 0,1,2]
                                           [--shots 10] [--epochs 15] [--out DIR]

Each proxy is a source task and a target task with *other* classes (or, for xray, the same
findings on new patients with subtler lesions), ``--shots`` labelled training images and 5
validation images per target class, and a large test split:

- **digits**: sklearn's 1,797 real 8x8 digit scans at 32 px; source 0–4, target 5–9;
- **shapes**: generated grey shapes at 32 px (position, size, rotation, stroke, blur,
  noise); source circle/square/triangle/cross/ring, target star/hexagon/diamond/arrow/bar;
- **xray**: medical's generated chest X-rays at 64 px; source with clear lesions, target
  with subtle ones (the demo's generator, other seeds).

The source model is one `tl run medical` from random init on the source task. Every target
run is `tl run medical`'s training and evaluation (``train_variant`` and
``evaluate_variant``, without export or report): scratch is ``--weights none
--strategy full``; the others fine-tune the source run with ``--strategy S``; auto is what a
user gets without ``--strategy``. A seed changes which images are labelled and the run's
``--seed``. Printed: test accuracy per proxy and recipe (mean ± sd over seeds), and for auto
its margin over scratch and its gap to the best other recipe. Target (issue 19): auto beats
scratch on every proxy and is never more than 0.01 below the best of the others.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import result  # noqa: E402

RECIPES = ["scratch", "full", "gradual", "llrd", "auto"]
SOURCE_SHAPES = ["circle", "square", "triangle", "cross", "ring"]
TARGET_SHAPES = ["star", "hexagon", "diamond", "arrow", "bar"]


def _save(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def digits_images(root: Path) -> dict[str, list[Path]]:
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    by_class: dict[str, list[Path]] = {}
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        pixels = (image * (255 / 16)).round().astype(np.uint8)
        path = root / str(label) / f"d{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).resize((32, 32), Image.Resampling.BILINEAR).save(path)
        by_class.setdefault(str(label), []).append(path)
    return by_class


def _shape_points(kind: str, rng: np.random.Generator) -> list[tuple[float, float]]:
    """A unit-size outline of ``kind`` (centred, before rotation and scaling)."""

    def polygon(n: int, radius: float = 1.0, phase: float = 0.0) -> list[tuple[float, float]]:
        return [(radius * np.cos(phase + 2 * np.pi * k / n),
                 radius * np.sin(phase + 2 * np.pi * k / n)) for k in range(n)]  # fmt: skip

    if kind == "triangle":
        return polygon(3)
    if kind == "square":
        return polygon(4, phase=np.pi / 4)
    if kind == "hexagon":
        return polygon(6)
    if kind == "diamond":
        return [(0, -1), (0.55, 0), (0, 1), (-0.55, 0)]
    if kind == "star":
        outer, inner = polygon(5, 1.0, -np.pi / 2), polygon(5, 0.42, -np.pi / 2 + np.pi / 5)
        return [p for pair in zip(outer, inner, strict=True) for p in pair]
    if kind == "arrow":
        return [(-1, -0.25), (0.2, -0.25), (0.2, -0.6), (1, 0), (0.2, 0.6), (0.2, 0.25),
                (-1, 0.25)]  # fmt: skip
    if kind == "bar":
        return [(-1, -0.22), (1, -0.22), (1, 0.22), (-1, 0.22)]
    if kind == "cross":
        a = 0.3
        return [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a),
                (-1, a), (-1, -a), (-a, -a)]  # fmt: skip
    raise ValueError(kind)


def shape_image(kind: str, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFilter

    canvas = 4 * size  # drawn large, then downsampled: anti-aliased edges
    image = Image.new("L", (canvas, canvas), int(rng.integers(0, 60)))
    draw = ImageDraw.Draw(image)
    scale = canvas * rng.uniform(0.22, 0.36)
    centre = canvas * rng.uniform(0.38, 0.62, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    colour = int(rng.integers(150, 256))
    width = int(canvas * rng.uniform(0.03, 0.06))
    if kind in ("circle", "ring"):
        box = [*(centre - scale), *(centre + scale)]
        if kind == "circle":
            draw.ellipse(box, fill=colour)
        else:
            draw.ellipse(box, outline=colour, width=width * 2)
    else:
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = [tuple(centre + scale * rotation @ np.array(p)) for p in _shape_points(kind, rng)]
        if rng.random() < 0.5:
            draw.polygon(points, fill=colour)
        else:
            draw.polygon(points, outline=colour, width=width)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 3)))
    image = image.resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, rng.uniform(3, 15), (size, size))
    return pixels.clip(0, 255).astype(np.uint8)


def shapes_images(root: Path, classes: list[str], n: int, seed: int) -> dict[str, list[Path]]:
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[Path]] = {}
    for kind in classes:
        for i in range(n):
            path = root / kind / f"{kind}{i:04d}.png"
            _save(shape_image(kind, rng), path)
            by_class.setdefault(kind, []).append(path)
    return by_class


def xray_images(root: Path, n: int, seed: int, contrast: float) -> dict[str, list[Path]]:
    from tl_medical.demo import CLASSES, write_dataset

    folder = write_dataset(root, {c: n for c in CLASSES}, seed=seed, dicom_fraction=0.0,
                           lesion_contrast=contrast, image_size=64)  # fmt: skip
    return {c: sorted((folder / c).rglob("*.png")) for c in CLASSES}


def write_manifest(path: Path, splits: dict[str, dict[str, list[Path]]]) -> Path:
    """``path,label,split`` rows for {split: {label: [files]}}."""
    lines = ["path,label,split"]
    for split, by_class in splits.items():
        for label, files in by_class.items():
            lines += [f"{f},{label},{split}" for f in files]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def few_label_splits(by_class: dict[str, list[Path]], shots: int, seed: int) -> dict:
    """``shots`` training and 5 validation images per class (chosen by ``seed``), the rest test."""
    rng = np.random.default_rng(1000 + seed)
    splits: dict[str, dict[str, list[Path]]] = {"train": {}, "val": {}, "test": {}}
    for label, files in by_class.items():
        order = rng.permutation(len(files))
        chosen = [files[i] for i in order]
        splits["train"][label] = chosen[:shots]
        splits["val"][label] = chosen[shots : shots + 5]
        splits["test"][label] = chosen[shots + 5 :]
    return splits


def source_splits(by_class: dict[str, list[Path]]) -> dict:
    rng = np.random.default_rng(0)
    splits: dict[str, dict[str, list[Path]]] = {"train": {}, "val": {}, "test": {}}
    for label, files in by_class.items():
        order = [files[i] for i in rng.permutation(len(files))]
        n_val = max(5, len(order) // 10)
        splits["val"][label], splits["test"][label] = order[:n_val], order[n_val : 2 * n_val]
        splits["train"][label] = order[2 * n_val :]
    return splits


def proxy_data(name: str, root: Path) -> tuple[dict, dict, int]:
    """(source images by class, target images by class, image size) of proxy ``name``."""
    if name == "digits":
        images = digits_images(root / "digits")
        source = {c: images[c] for c in "01234"}
        return source, {c: images[c] for c in "56789"}, 32
    if name == "shapes":
        source = shapes_images(root / "shapes-source", SOURCE_SHAPES, 200, seed=1)
        return source, shapes_images(root / "shapes-target", TARGET_SHAPES, 120, seed=2), 32
    if name == "xray":
        source = xray_images(root / "xray-source", 150, seed=21, contrast=0.6)
        return source, xray_images(root / "xray-target", 80, seed=22, contrast=0.4), 64
    raise SystemExit(f"unknown proxy {name!r}")


def train_and_test(manifest: Path, flags: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """`tl run medical`'s training and test evaluation (no export, no report)."""
    from tl.core.progress import ProgressReporter
    from tl.core.run import evaluate_variant, train_variant
    from tl.core.run_config import resolve_run_config
    from tl_medical.plugin import MedicalPlugin

    plugin = MedicalPlugin()
    config = resolve_run_config(plugin, {"data": str(manifest), **flags})
    data = plugin.load(Path(config["data"]), config)
    run_dir.mkdir(parents=True, exist_ok=True)
    reporter = ProgressReporter(stream=io.StringIO())
    variant = train_variant(plugin, data, config, run_dir, reporter)
    metrics = evaluate_variant(plugin, data, variant).metrics
    return {
        "accuracy": float(metrics["accuracy"]),
        "auroc": float(metrics.get("auroc", float("nan"))),
        "strategy": config["strategy"],
        "best_epoch": variant.fit.best_epoch,
        "epochs_run": len(variant.fit.history),
        "seconds": round(variant.fit.seconds, 1),
    }


def source_run(manifest: Path, size: int, out: Path, args: argparse.Namespace) -> Path:
    from tl.core.progress import ProgressReporter
    from tl.core.run import run_plugin
    from tl_medical.plugin import MedicalPlugin

    options = {"data": str(manifest), "weights": "none", "strategy": "full", "epochs": 10,
               "lr": 3e-3, "image_size": size, "backbone": args.backbone, "batch_size": 32,
               "out": str(out), "device": "cpu", "compare_scratch": False}  # fmt: skip
    return run_plugin(MedicalPlugin(), options, ProgressReporter(stream=io.StringIO()))


def run_proxy(name: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    source, target, size = proxy_data(name, root / "data")
    src_dir = source_run(write_manifest(root / name / "source.csv", source_splits(source)),
                         size, root / name / "runs", args)  # fmt: skip
    src_metrics = json.loads((src_dir / "metrics.json").read_text())
    print(f"{name}: source accuracy {src_metrics['accuracy']:.3f}", file=sys.stderr, flush=True)
    common = {"backbone": args.backbone, "image_size": size, "epochs": args.epochs,
              "batch_size": args.batch_size, "device": "cpu", "compare_scratch": False}  # fmt: skip
    scores: dict[str, list[dict[str, Any]]] = {r: [] for r in RECIPES}
    for seed in args.seeds:
        manifest = write_manifest(root / name / f"target-{seed}.csv",
                                  few_label_splits(target, args.shots, seed))  # fmt: skip
        for recipe in RECIPES:
            flags = {**common, "seed": seed}
            if recipe == "scratch":
                flags.update(weights="none", strategy="full")
            else:
                flags["weights"] = str(src_dir)
                if recipe != "auto":
                    flags["strategy"] = recipe
            run = train_and_test(manifest, flags, root / name / f"{recipe}-{seed}")
            scores[recipe].append(run)
            print(f"{name} seed {seed} {recipe:8s} accuracy {run['accuracy']:.3f} auroc "
                  f"{run['auroc']:.3f} best epoch {run['best_epoch']}/{run['epochs_run']} "
                  f"{run['seconds']} s", file=sys.stderr, flush=True)  # fmt: skip
    return {"source_accuracy": src_metrics["accuracy"], "runs": scores}


def summary(proxies: dict[str, dict[str, Any]]) -> tuple[str, dict[str, dict[str, float]]]:
    lines = ["| proxy | " + " | ".join(RECIPES) + " | auto − scratch | auto − best other |",
             "|---|" + "---|" * (len(RECIPES) + 2)]  # fmt: skip
    margins: dict[str, dict[str, float]] = {}
    for name, proxy in proxies.items():
        means = {r: statistics.mean(x["accuracy"] for x in runs)
                 for r, runs in proxy["runs"].items()}  # fmt: skip
        sds = {r: statistics.pstdev(x["accuracy"] for x in runs)
               for r, runs in proxy["runs"].items()}  # fmt: skip
        best_other = max(v for r, v in means.items() if r not in ("auto", "scratch"))
        margins[name] = {"over_scratch": means["auto"] - means["scratch"],
                         "to_best_other": means["auto"] - best_other}  # fmt: skip
        cells = [f"{means[r]:.3f} ± {sds[r]:.3f}" for r in RECIPES]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {margins[name]['over_scratch']:+.3f}"
                     f" | {margins[name]['to_best_other']:+.3f} |")  # fmt: skip
    return "\n".join(lines), margins


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxies", default="digits,shapes,xray")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    import torch

    torch.set_num_threads(args.threads)
    root = args.out or Path(tempfile.mkdtemp(prefix="transfer-recipes-"))
    proxies = {name: run_proxy(name, root, args) for name in args.proxies.split(",")}
    text, margins = summary(proxies)
    print(text)
    (root / "transfer_recipes.json").write_text(json.dumps(proxies, indent=1, default=str))
    worst_scratch = min(m["over_scratch"] for m in margins.values())
    worst_gap = min(m["to_best_other"] for m in margins.values())
    return result(
        "transfer_recipes",
        ours=worst_scratch,
        baseline=0.0,
        ratio=worst_gap,
        target="auto > scratch on every proxy; auto - best other >= -0.01",
        ok=worst_scratch > 0 and worst_gap >= -0.01,
        unit="accuracy margin",
        margins=margins,
    )


if __name__ == "__main__":
    main()
