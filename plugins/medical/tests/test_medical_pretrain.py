"""`tl pretrain medical`: SimCLR on unlabelled scans helps a few-label fine-tune; supervised
source pretraining keeps its labels in the weights; bad input is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tl.core.backbones import read_safetensors_metadata
from tl.core.run import pretrain_plugin, run_plugin
from tl_medical.demo import write_dataset
from tl_medical.plugin import MedicalPlugin

SIZE = 64
CONTRAST = 0.6  # at 64 px the default 0.35 is barely learnable from 22 labelled images
COMMON = {"backbone": "resnet10t", "image_size": SIZE, "device": "cpu", "seed": 0, "patience": 0}
#: the AUROC margin SSL must win by (measured: see the test's docstring)
MARGIN = 0.05


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pretrain")
    classes = ("normal", "effusion")
    return {
        # unlabelled in-domain pool: class folders are ignored by --method simclr
        "pool": write_dataset(
            root / "pool", dict.fromkeys(classes, 60), seed=11, image_size=SIZE,
            lesion_contrast=CONTRAST,
        ),
        "few": write_dataset(
            root / "few", dict.fromkeys(classes, 30), seed=12, image_size=SIZE,
            lesion_contrast=CONTRAST,
        ),
    }  # fmt: skip


def test_ssl_pretraining_beats_random_init_on_few_labels(scans, tmp_path):
    """Linear probe on 22 labelled scans (30 test): SimCLR backbone vs random init."""
    plugin = MedicalPlugin()
    pre = pretrain_plugin(
        plugin,
        {
            **COMMON,
            "data": str(scans["pool"]),
            "weights": "none",
            "epochs": 10,
            "batch_size": 32,
            "lr": 3e-3,
            "out": str(tmp_path),
        },
    )
    meta = read_safetensors_metadata(pre / "backbone.safetensors")["tl"]
    assert meta["method"].startswith("self-supervised")
    assert meta["weights_meta"]["in_chans"] == 1
    info = json.loads((pre / "pretrain.json").read_text())
    assert info["images"] == 120 and info["n_train"] + info["n_val"] == 120
    run = run_plugin(
        plugin,
        {
            **COMMON,
            "data": str(scans["few"]),
            "weights": str(pre),
            "strategy": "linear",
            "epochs": 15,
            "batch_size": 16,
            "lr": 5e-3,
            "test_fraction": 0.5,
            "compare_scratch": True,
            "out": str(tmp_path),
        },
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["onnx_parity"]["max_abs_diff"] < 1e-4
    gain = metrics["auroc"] - metrics["scratch"]["auroc"]
    assert gain >= MARGIN, (metrics["auroc"], metrics["scratch"]["auroc"])


def test_supervised_pretraining_keeps_the_source_labels(scans, tmp_path):
    pre = pretrain_plugin(
        MedicalPlugin(),
        {
            **COMMON,
            "data": str(scans["few"]),
            "method": "supervised",
            "weights": "none",
            "epochs": 1,
            "batch_size": 32,
            "out": str(tmp_path),
        },
    )
    meta = read_safetensors_metadata(pre / "backbone.safetensors")["tl"]
    assert meta["method"] == "supervised"
    assert meta["weights_meta"]["source_labels"] == ["effusion", "normal"]


def test_cli_pretrain_on_a_folder_without_images_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    proc = subprocess.run(
        [sys.executable, "-m", "tl.cli", "pretrain", "medical", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "TL_VERBOSE": "0"},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no images found")
