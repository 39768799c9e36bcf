"""Tiny datasets and `tl run` argument lists for each real plugin (reliability tests).

The smallest sizes each plugin accepts, so that several full runs per plugin fit in the
test budget on two CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def medical(root: Path) -> tuple[Path, list[str]]:
    from tl_medical.demo import write_dataset

    data = write_dataset(root / "scans", {"normal": 12, "nodule": 12}, seed=3, image_size=48)
    return data, ["--backbone", "resnet10t", "--image-size", "32", "--batch-size", "8",
                  "--weights", "none", "--no-augment"]  # fmt: skip


def fraud(root: Path) -> tuple[Path, list[str]]:
    from tl_fraud.demo import NEW_MARKET, generate

    root.mkdir(parents=True, exist_ok=True)
    path = root / "tx.csv"
    generate(NEW_MARKET, 800, np.random.default_rng(7), "2024-07-01", 30, 0.06).to_csv(
        path, index=False
    )
    return path, ["--target", "is_fraud", "--time-column", "ts", "--drop", "transaction_id",
                  "--drop", "card_id", "--d-token", "8", "--n-blocks", "1", "--batch-size",
                  "128", "--weights", "none"]  # fmt: skip


def recsys(root: Path) -> tuple[Path, list[str]]:
    from tl_recsys.plugin import RecsysPlugin

    demo = RecsysPlugin().demo(root / "recsys", "small", seed=0)
    return demo / "market_b.csv", ["--d-model", "8", "--layers", "1", "--heads", "1",
                                   "--max-len", "8", "--top-k", "10", "--batch-size", "128",
                                   "--weights", "none"]  # fmt: skip


def driving(root: Path) -> tuple[Path, list[str]]:
    from tl_driving.demo import SIZES, write_demo

    SIZES.setdefault("reliability", {"day": 24, "night": 4, "width": 96, "height": 64})
    scenes = write_demo(root / "scenes", "reliability", seed=0)
    # resnet10t: its detector exports to ONNX in about half mobilenetv3's time (fewer graph
    # nodes), and the export is most of a tiny driving run
    return scenes / "day", ["--backbone", "resnet10t", "--image-size", "64",
                            "--head-channels", "16", "--batch-size", "8", "--weights", "none",
                            "--no-baseline"]  # fmt: skip


PLUGINS = {"medical": medical, "fraud": fraud, "recsys": recsys, "driving": driving}
COMMON = ["--seed", "0", "--device", "cpu", "--patience", "0"]
