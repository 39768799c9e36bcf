"""Data path vs training step: the loader must deliver images well faster than a step eats them.

    python tests/bench/loader_throughput.py [--backbone resnet18] [--image-size 128]
                                            [--n 512] [--batch-size 32] [--num-workers 0]

Images are decoded once into uint8 arrays (as the medical plugin does) and augmented on the
fly (medical's mild affine + contrast when tl-medical is installed). ``loader`` is images/s
from `Trainer.loader` alone (augmentation, collation, pinning); ``step`` is images/s of
forward + backward + AdamW of ``--backbone`` on CPU. Target: loader / step ≥ 3.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _common import result  # noqa: E402
from trainer_overhead import ClassifyTask, make_model  # noqa: E402


def dataset(n: int, size: int) -> Any:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), generator=generator).to(torch.uint8)
    targets = torch.randint(0, 4, (n,), generator=generator)
    try:
        from tl_medical.loading import ImageDataset
    except ImportError:
        from torch.utils.data import TensorDataset

        return TensorDataset(images, targets)
    return ImageDataset(images, targets, augment=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args(argv)

    from tl.core.progress import ProgressReporter
    from tl.core.trainer import TrainConfig, Trainer

    data = dataset(args.n, args.image_size)
    config = TrainConfig(batch_size=args.batch_size, device="cpu", num_workers=args.num_workers)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(
            config,
            ClassifyTask(),
            Path(run_dir),
            ProgressReporter(stream=io.StringIO()),
            tensorboard=False,
        )
        loader = trainer.loader(data, None, shuffle=True, epoch=0)
        next(iter(loader))  # start workers
        start, images = time.perf_counter(), 0
        for images_batch, _ in loader:
            images += len(images_batch)
        loader_rate = images / (time.perf_counter() - start)

    model = make_model(args.backbone)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = torch.randint(0, 256, (args.batch_size, 3, args.image_size, args.image_size))
    batch = batch.to(torch.uint8)
    labels = torch.randint(0, 4, (args.batch_size,))
    model.train()

    def step() -> None:
        loss = nn.functional.cross_entropy(model(batch), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    step_rate = args.steps * args.batch_size / (time.perf_counter() - start)
    ratio = loader_rate / step_rate
    return result(
        "loader_throughput",
        loader_rate,
        step_rate,
        ratio,
        ">= 3",
        ratio >= 3,
        unit="images/s",
        num_workers=args.num_workers,
    )


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
