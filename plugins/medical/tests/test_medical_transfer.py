"""Transfer through ``--weights``: a backbone trained on one generated chest-X-ray task,
fine-tuned on a related task with few labels, beats the same model from random init."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_medical_end_to_end import tl
from tl_medical.demo import CLASSES, write_dataset

COMMON = ["--backbone", "resnet10t", "--image-size", "96", "--batch-size", "16", "--device", "cpu"]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """The source task: plenty of labels, clear lesions."""
    root = tmp_path_factory.mktemp("source")
    data = write_dataset(
        root / "scans", {c: 80 for c in CLASSES}, seed=11, lesion_contrast=0.6, image_size=128
    )
    proc = tl(
        "run", "medical", "--data", str(data), "--weights", "none", "--epochs", "8",
        "--lr", "3e-3", "--out", str(root / "runs"), *COMMON,
    )  # fmt: skip
    return Path(proc.stdout.strip().splitlines()[-1])


def fine_tune(data: Path, weights: str, out: Path) -> dict:
    proc = tl(
        "run", "medical", "--data", str(data), "--weights", weights, "--epochs", "5",
        "--lr", "1e-3", "--test-fraction", "0.4", "--no-compare-scratch", "--out", str(out),
        *COMMON,
    )  # fmt: skip
    return json.loads((Path(proc.stdout.strip().splitlines()[-1]) / "metrics.json").read_text())


def test_pretrained_weights_beat_random_init_with_few_labels(source_run, tmp_path):
    source = json.loads((source_run / "metrics.json").read_text())
    assert source["auroc"] > 0.8, "the source model must have learned its task"
    # the related task: new patients, subtler lesions, 30 images a class (≈13 to train on)
    target = write_dataset(
        tmp_path / "target", {c: 30 for c in CLASSES}, seed=12, lesion_contrast=0.45,
        image_size=128,
    )  # fmt: skip
    transferred = fine_tune(target, str(source_run), tmp_path / "runs")
    scratch = fine_tune(target, "none", tmp_path / "runs")
    assert transferred["weights"] == str(source_run)
    assert transferred["n_train"] == scratch["n_train"] < 50
    print(f"target AUROC: transferred {transferred['auroc']:.3f}, scratch {scratch['auroc']:.3f}")
    assert transferred["auroc"] >= scratch["auroc"] + 0.2
    assert transferred["auroc"] > 0.75
