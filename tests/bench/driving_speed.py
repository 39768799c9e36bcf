"""Driving detector speed on CPU: onnxruntime vs torch eager, frames/s at the export
resolution, NMS and padding included in both.

    python tests/bench/driving_speed.py [RUN_DIR] [--backbone resnet18] [--image-size 160]
                                        [--batch 4] [--seconds 3] [--threads 2] [--full]

``--full``: the full-size measurement (256 px, batch 8, 10 s per side). `main()` returns the
shared bench record (ours = onnxruntime frames/s, baseline = torch eager); target ≥ 1.

With a run directory (from `tl run driving`) its model.onnx and best checkpoint are timed;
without one, a random-init detector of ``--backbone`` is exported first. Run on demand (not
part of the test suite).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import result  # noqa: E402


def frames_per_second(run, batch: np.ndarray, seconds: float) -> float:
    run(batch)  # warm-up
    frames, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run(batch)
        frames += len(batch)
    return frames / (time.perf_counter() - start)


def build(args: argparse.Namespace, workdir: Path):
    """(torch module uint8 → detections, onnx path, (height, width))."""
    import torch
    from tl.core import BackboneSpec
    from tl_driving.model import build_detector
    from tl_driving.postprocess import DetectorWithNms
    from tl_driving.records import canvas_size

    if args.run_dir:
        from safetensors.torch import load_file
        from tl.core.runtime import read_metadata

        run_dir = Path(args.run_dir)
        meta = read_metadata(run_dir / "model.onnx")
        canvas = (meta["input"]["height"], meta["input"]["width"])
        model = build_detector(BackboneSpec(meta["backbone"], "none"), len(meta["labels"]))
        state = load_file(str(run_dir / "checkpoints" / "best.safetensors"))
        channels = state["head.cls_logits.weight"].shape[1]
        if channels != 64:
            model = build_detector(
                BackboneSpec(meta["backbone"], "none"), len(meta["labels"]), channels
            )
        model.load_state_dict(state, strict=False)
        module = DetectorWithNms(
            model, canvas, meta["score_threshold"], meta["iou_threshold"], meta["max_det"]
        )
        return module.eval(), run_dir / "model.onnx", canvas
    canvas = canvas_size(args.image_size, 9 / 16)
    model = build_detector(BackboneSpec(args.backbone, "none"), 4)
    module = DetectorWithNms(model, canvas).eval()
    path = workdir / "model.onnx"
    example = torch.zeros(2, 3, *canvas, dtype=torch.uint8)
    torch.onnx.export(
        module,
        (example,),
        str(path),
        dynamo=False,
        opset_version=18,
        input_names=["images"],
        output_names=["detections"],
        dynamic_axes={"images": {0: "batch"}, "detections": {0: "batch"}},
    )
    return module, path, canvas


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="256 px, batch 8, 10 s")
    args = parser.parse_args(argv)
    if args.full:
        args.image_size, args.batch, args.seconds = 256, 8, 10.0

    import onnxruntime as ort
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        module, onnx_path, canvas = build(args, Path(tmp))
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.log_severity_level = 3
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        batch = rng.integers(0, 256, (args.batch, 3, *canvas), dtype=np.uint8)

        def run_torch(images: np.ndarray) -> None:
            with torch.inference_mode():
                module(torch.from_numpy(images))

        def run_onnx(images: np.ndarray) -> None:
            session.run(None, {"images": images})

        eager = frames_per_second(run_torch, batch, args.seconds)
        onnx = frames_per_second(run_onnx, batch, args.seconds)
    print(f"canvas {canvas[1]}x{canvas[0]}, batch {args.batch}, {args.threads} CPU threads")
    print(f"torch eager  {eager:8.1f} frames/s")
    print(f"onnxruntime  {onnx:8.1f} frames/s   ({onnx / eager:.2f}x)")
    ratio = onnx / eager
    return result(
        "driving_speed", onnx, eager, ratio, ">= 1", ratio >= 1.0, unit="frames/s",
        canvas=list(canvas), batch=args.batch,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
