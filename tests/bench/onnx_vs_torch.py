"""Inference throughput of an exported tl model on CPU: onnxruntime vs torch eager.

    python tests/bench/onnx_vs_torch.py [RUN_DIR] [--backbone resnet18] [--image-size 128]
                                        [--batch 1] [--seconds 6] [--rounds 3] [--threads 2]

With a run directory (from `tl run medical`), its model.onnx and best checkpoint are timed;
without one, a random-init ``ClassifierModel`` of ``--backbone`` goes through the same
export (`tl.core.export.export_onnx`, parity checked) first. Both sides take the same
uint8 batch and include normalisation and softmax, with the same thread count; the
onnxruntime session is `tl predict`'s (`load_onnx_model`). The two alternate over
``--rounds`` rounds and the fastest round of each is kept.
Target: onnxruntime ≥ 2× torch eager (images/s), at the deployment-typical batch 1.
"""

from __future__ import annotations

import argparse
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


class WithSoftmax(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image).softmax(-1)


def images_per_second(run, batch: np.ndarray, seconds: float) -> float:
    run(batch)
    run(batch)
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run(batch)
        images += len(batch)
    return images / (time.perf_counter() - start)


def fastest_alternating(runs: dict[str, Any], batch: np.ndarray, seconds: float, rounds: int):
    """Images/s of each run, the best of ``rounds`` rounds that alternate between them (a
    burst of load on a shared machine hits one round of each, not one side's whole time)."""
    best = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for name, run in runs.items():
            best[name] = max(best[name], images_per_second(run, batch, seconds / rounds))
    return best


def from_run(run_dir: Path) -> tuple[nn.Module, Path, tuple[int, ...]]:
    from safetensors.torch import load_file
    from tl.core.backbones import BackboneSpec, create_backbone
    from tl.core.models import ClassifierModel
    from tl.core.runtime import read_metadata

    meta = read_metadata(run_dir / "model.onnx")
    shape = tuple(meta["input"]["shape"][1:])
    net = create_backbone(BackboneSpec(meta["backbone"], "none"), num_classes=0, in_chans=shape[0])
    state = load_file(str(run_dir / "checkpoints" / "best.safetensors"))
    outputs = state["head.1.weight"].shape[0]
    model = ClassifierModel(net, outputs, mean=(0.0,) * shape[0], std=(1.0,) * shape[0])
    model.load_state_dict(state)
    return WithSoftmax(model).eval(), run_dir / "model.onnx", shape


def exported(backbone: str, image_size: int, workdir: Path) -> tuple[nn.Module, Path, tuple]:
    from tl.core.backbones import BackboneSpec, create_backbone
    from tl.core.export import export_onnx
    from tl.core.models import ClassifierModel
    from tl.core.plugin import ExportSpec

    torch.manual_seed(0)
    net = create_backbone(BackboneSpec(backbone, "none"), num_classes=0)
    module = WithSoftmax(ClassifierModel(net, 3, mean=(0.5,) * 3, std=(0.25,) * 3)).eval()
    shape = (3, image_size, image_size)
    batch = np.random.default_rng(0).integers(0, 256, (4, *shape), dtype=np.uint8)
    spec = ExportSpec(
        module=module,
        batches=[{"image": batch}],
        input_names=["image"],
        output_names=["probabilities"],
        dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
        agreement_output="probabilities",
    )
    path = workdir / "model.onnx"
    parity = export_onnx(spec, path, {"plugin": "bench", "backbone": backbone})
    print(f"exported {backbone}: max abs diff {parity['max_abs_diff']:.1e}", file=sys.stderr)
    return module, path, shape


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=6.0, help="per side, all rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from tl.core.runtime import load_onnx_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.run_dir:
            module, onnx_path, shape = from_run(Path(args.run_dir))
        else:
            module, onnx_path, shape = exported(args.backbone, args.image_size, Path(tmp))
        session = load_onnx_model(onnx_path, device="cpu", threads=args.threads).session
        name = session.get_inputs()[0].name
        batch = np.random.default_rng(1).integers(0, 256, (args.batch, *shape), dtype=np.uint8)

        def run_torch(x: np.ndarray) -> None:
            with torch.inference_mode():
                module(torch.from_numpy(x))

        def run_onnx(x: np.ndarray) -> None:
            session.run(None, {name: x})

        speeds = fastest_alternating(
            {"torch": run_torch, "onnx": run_onnx}, batch, args.seconds, args.rounds
        )
        eager, onnx = speeds["torch"], speeds["onnx"]
    ratio = onnx / eager
    return result(
        "onnx_vs_torch",
        onnx,
        eager,
        ratio,
        ">= 2",
        ratio >= 2.0,
        unit="images/s",
        batch=args.batch,
        threads=args.threads,
    )


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
