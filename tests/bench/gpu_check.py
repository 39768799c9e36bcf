"""GPU smoke benchmark (run when a GPU is lent): AMP training, ONNX export, onnxruntime CUDA.

    python tests/bench/gpu_check.py [--steps 300] [--batch-size 128] [--image-size 224]
                                    [--backbone resnet50] [--ort-seconds 10]

1. ``--steps`` optimizer steps of ``--backbone`` (``--weights none``) at 224 px through tl's
   `Trainer` — bf16 autocast (fp16 + GradScaler where bf16 is unsupported), channels_last,
   cudnn.benchmark, pinned memory with persistent workers — on synthetic uint8 images;
   images/s from the epochs after the first (warm-up, cudnn autotuning excluded).
2. Export to ONNX with parity checked (`tl.core.export.export_onnx`).
3. onnxruntime throughput with the CUDA provider and IO binding (`tl.core.runtime`).
4. The fp16 variant (`tl.core.half.convert`, what `tl export --precision fp16` writes) on the
   CUDA provider: its probabilities against the fp32 model's on the same provider (max
   absolute difference; top-1 agreement, informative only: a random-label model has near
   ties) and its throughput.
5. The same training in a hand-written loop (AdamW, bf16/fp16 autocast, channels_last,
   pinned memory, the same workers and data, a validation pass per epoch): tl's images/s over
   the loop's, epochs after the first (``tl_vs_loop``, target ≥ 0.95).
6. `tl serve` on the CUDA provider (`serve.py --device cuda`, a medical CNN; needs
   tl-medical): requests/s at 16 clients with dynamic batching over ``--max-batch 1``
   (``serve_batching_ratio``, target ≥ 2) and the one-client overhead over a bare
   ``InferenceSession.run`` (``serve_overhead_p50_ms``, goal ≤ 2).

Prints one JSON line and exits 0; without a GPU it says so in that line and exits 0.
Sized to finish in well under 5 minutes on one modern GPU.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--ort-seconds", type=float, default=10.0)
    parser.add_argument("--ort-batch", type=int, default=64)
    args = parser.parse_args(argv)

    import torch

    record: dict[str, Any] = {"name": "gpu_check", "gpu": torch.cuda.is_available()}
    if not torch.cuda.is_available():
        record.update(ok=True, skipped="no GPU available (torch.cuda.is_available() is False)")
        print(json.dumps(record))
        return record

    from tl.core.runtime import cuda_available, load_onnx_model

    started = time.time()
    record.update(
        device=torch.cuda.get_device_name(0),
        amp_dtype="bfloat16" if torch.cuda.is_bf16_supported() else "float16",
        backbone=args.backbone,
        image_size=args.image_size,
        batch_size=args.batch_size,
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, fit, seconds = train(args, work)
        record.update(fit)
        record["train_seconds"] = round(seconds, 1)
        t0 = time.time()
        onnx_path, parity = export(model, args, work)
        record["export_seconds"] = round(time.time() - t0, 1)
        record["onnx_max_abs_diff"] = parity["max_abs_diff"]
        record["ort_cuda_driver"] = cuda_available()
        onnx_model = load_onnx_model(onnx_path, device="cuda")
        record["ort_providers"] = onnx_model.providers
        record["ort_images_per_second"] = round(ort_throughput(onnx_model, args), 1)
        record.update(fp16_check(onnx_model, onnx_path, args, work))
        loop_images_per_second = hand_loop(args)
        record["loop_images_per_second"] = round(loop_images_per_second, 1)
        record["tl_vs_loop"] = round(
            record["train_images_per_second_with_checkpoints"] / loop_images_per_second, 3
        )
        record.update(serve_check())
    record["total_seconds"] = round(time.time() - started, 1)
    record["ok"] = (
        record["train_images_per_second"] > 0
        and record["ort_providers"][0] != "CPUExecutionProvider"
        and record["onnx_max_abs_diff"] < 1e-2
        and record["fp16_providers"][0] != "CPUExecutionProvider"
        and record["fp16_max_abs_diff"] < 1e-2
    )
    print(json.dumps(record))
    return record


def serve_check() -> dict[str, Any]:
    """`serve.py` on the GPU; skipped (and said so) without tl-medical."""
    import importlib.util

    if importlib.util.find_spec("tl_medical") is None:
        return {"serve_skipped": "needs tl-medical"}
    sys.path.insert(0, str(Path(__file__).parent))
    import serve

    served = serve.main(["--device", "cuda"])
    return {
        "serve_requests_per_s": round(served["ours"], 1),
        "serve_requests_per_s_max_batch_1": round(served["baseline"], 1),
        "serve_batching_ratio": round(served["ratio"], 3),
        "serve_overhead_p50_ms": served["overhead_p50_ms"],
        "serve_bare_batching_gain": served["bare_batching_gain"],
        "serve_ok": served["ok"],
    }


def _synthetic(args: argparse.Namespace):
    import torch
    from torch.utils.data import TensorDataset

    n = 16 * args.batch_size
    g = torch.Generator().manual_seed(0)
    size = args.image_size
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=g)
    return TensorDataset(images, labels), TensorDataset(
        images[: args.batch_size], labels[: args.batch_size]
    )


def hand_loop(args: argparse.Namespace) -> float:
    """Images/s of `train`'s work written by hand, epochs after the first."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    train_set, val_set = _synthetic(args)
    epochs = max(2, math.ceil(args.steps / 16))
    model = make_model(args.backbone).cuda().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    workers = dict(num_workers=args.num_workers, persistent_workers=args.num_workers > 0)
    train = DataLoader(train_set, args.batch_size, shuffle=True, pin_memory=True, **workers)
    val = DataLoader(val_set, args.batch_size, pin_memory=True)

    def on_gpu(images):
        images = images.cuda(non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last)

    marks = []
    for _ in range(epochs):
        model.train()
        for images, labels in train:
            with torch.autocast("cuda", dtype=dtype):
                loss = F.cross_entropy(model(on_gpu(images)).float(), labels.cuda())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        model.eval()
        with torch.inference_mode(), torch.autocast("cuda", dtype=dtype):
            for images, _ in val:
                model(on_gpu(images)).float().argmax(1).cpu()
        torch.cuda.synchronize()
        marks.append(time.perf_counter())
    return len(train_set) * (epochs - 1) / (marks[-1] - marks[0])


def make_model(backbone: str):
    import torch
    from tl.core.backbones import BackboneSpec, create_backbone
    from tl.core.models import ClassifierModel

    torch.manual_seed(0)
    net = create_backbone(BackboneSpec(backbone, "none"), num_classes=0)
    return ClassifierModel(net, 10, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


class _Task:
    monitor, monitor_mode = "accuracy", "max"

    def training_step(self, model, batch):
        import torch.nn.functional as F

        images, labels = batch
        return F.cross_entropy(model(images).float(), labels)

    def predict_step(self, model, batch):
        images, labels = batch
        return {"logits": model(images).float(), "labels": labels}

    def metrics(self, outputs, split):
        import torch

        logits = torch.cat([o["logits"] for o in outputs])
        labels = torch.cat([o["labels"] for o in outputs])
        return {"accuracy": float((logits.argmax(1) == labels).float().mean())}


def train(args: argparse.Namespace, work: Path):
    import torch
    from tl.core.progress import ProgressReporter
    from tl.core.strategies import build_plan
    from tl.core.trainer import TrainConfig, Trainer
    from torch.utils.data import TensorDataset

    steps_per_epoch = 16
    n = steps_per_epoch * args.batch_size
    epochs = max(2, math.ceil(args.steps / steps_per_epoch))
    g = torch.Generator().manual_seed(0)
    size = args.image_size
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=g)
    train_set = TensorDataset(images, labels)
    val_set = TensorDataset(images[: args.batch_size], labels[: args.batch_size])
    config = TrainConfig(
        epochs=epochs,
        batch_size=args.batch_size,
        patience=0,
        device="cuda",
        num_workers=args.num_workers,
        precise_bn_below_steps=0,
        amp=True,
        channels_last=True,
    )
    model = make_model(args.backbone)
    plan = build_plan(model, "full", lr=1e-3, weight_decay=0.05)
    marks: list[float] = []

    class EpochEnds:  # wall clock after each epoch's checkpoints: what the loop's marks are
        def on_epoch_end(self, trainer, state):
            torch.cuda.synchronize()
            marks.append(time.perf_counter())

    trainer = Trainer(
        config, _Task(), work / "run", ProgressReporter(stream=io.StringIO()),
        tensorboard=False, callbacks=[EpochEnds()],
    )  # fmt: skip
    start = time.time()
    result = trainer.fit(model, plan, train_set, val_set)
    seconds = time.time() - start
    later = result.history[1:]
    per_epoch = sum(row["seconds"] for row in later) / len(later)
    return (
        model,
        {
            "train_steps": epochs * steps_per_epoch,
            "train_images_per_second": round(n / per_epoch, 1),
            "train_images_per_second_with_checkpoints": round(
                n * (epochs - 1) / (marks[-1] - marks[0]), 1
            ),
            "final_train_loss": round(result.history[-1]["train_loss"], 4),
            "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        },
        seconds,
    )


def export(model, args: argparse.Namespace, work: Path):
    import numpy as np
    import torch
    from tl.core.export import export_onnx
    from tl.core.plugin import ExportSpec

    class Probabilities(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, image):
            return self.inner(image).softmax(-1)

    model = model.float().cpu().eval().to(memory_format=torch.contiguous_format)
    size = args.image_size
    batch = np.random.default_rng(0).integers(0, 256, (4, 3, size, size), dtype=np.uint8)
    spec = ExportSpec(
        module=Probabilities(model),
        batches=[{"image": batch}],
        input_names=["image"],
        output_names=["probabilities"],
        dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
        agreement_output="probabilities",
    )
    path = work / "model.onnx"
    parity = export_onnx(spec, path, {"plugin": "bench", "backbone": args.backbone})
    return path, parity


def fp16_check(fp32_model, fp32_path: Path, args: argparse.Namespace, work: Path):
    """fp16 vs fp32 on the CUDA provider: the verification `tl export --precision fp16`
    reports as "not verified here" on a machine without a GPU."""
    import numpy as np
    from tl.core.half import convert
    from tl.core.runtime import load_onnx_model
    from tl.core.variant_eval import stamp_variant

    half_path = work / "model.fp16.onnx"
    convert(fp32_path, half_path)
    stamp_variant(fp32_path, half_path, "fp16")
    half = load_onnx_model(half_path, device="cuda")
    size = args.image_size
    rng = np.random.default_rng(2)
    worst, agree, total = 0.0, 0, 0
    for _ in range(4):
        batch = rng.integers(0, 256, (args.ort_batch, 3, size, size), dtype=np.uint8)
        ref = fp32_model.run({"image": batch})["probabilities"]
        out = half.run({"image": batch})["probabilities"]
        worst = max(worst, float(np.abs(ref - out.astype(np.float32)).max()))
        agree += int((ref.argmax(1) == out.argmax(1)).sum())
        total += len(batch)
    return {
        "fp16_providers": half.providers,
        "fp16_max_abs_diff": round(worst, 6),
        "fp16_top1_agreement": round(agree / total, 4),
        "fp16_size_ratio": round(half_path.stat().st_size / fp32_path.stat().st_size, 4),
        "fp16_images_per_second": round(ort_throughput(half, args), 1),
    }


def ort_throughput(onnx_model, args: argparse.Namespace) -> float:
    import numpy as np

    size = args.image_size
    batch = np.random.default_rng(1).integers(
        0, 256, (args.ort_batch, 3, size, size), dtype=np.uint8
    )
    for _ in range(3):  # warm-up (cuDNN algorithm search)
        onnx_model.run({"image": batch})
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.ort_seconds:
        onnx_model.run({"image": batch})
        images += len(batch)
    return images / (time.perf_counter() - start)


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
