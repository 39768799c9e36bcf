"""`tl distill`: a finished run's teacher into a smaller student on the same splits."""

import json
import os
import subprocess
import sys

import pytest
from tl.core.distill import distill_run
from tl.core.errors import DataError
from tl.core.run import run_plugin
from toy_plugin import ToyPlugin, toy_options


@pytest.fixture(scope="module")
def teacher(toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    return run_plugin(ToyPlugin(), toy_options(toy_data, out, epochs=2, backbone="resnet18"))


def test_distilled_student_is_smaller_exported_and_compared(teacher, tmp_path):
    flags = {"student": "resnet10t", "epochs": 2, "out": str(tmp_path), "alpha": 0.7}
    run = distill_run(teacher, flags, plugin=ToyPlugin())
    assert run.parent == tmp_path
    metrics = json.loads((run / "metrics.json").read_text())
    d = metrics["distillation"]
    assert metrics["backbone"] == "resnet10t" and d["teacher"]["backbone"] == "resnet18"
    assert d["student"]["params"] < d["teacher"]["params"]
    assert d["student"]["onnx_bytes"] < d["teacher"]["onnx_bytes"]
    assert d["student"]["latency_batch1"]["median_ms"] > 0
    assert metrics["onnx_parity"]["max_abs_diff"] < 1e-4
    assert metrics["accuracy"] > 0.5  # chance is 1/3
    assert (run / "splits.csv").read_text() == (teacher / "splits.csv").read_text()
    report = (run / "report.md").read_text()
    assert report.startswith("# tl distill") and "Teacher vs student" in report


def test_changed_data_is_refused(teacher, tmp_path):
    (teacher / "splits.csv").write_text(
        (teacher / "splits.csv").read_text().replace("train", "val", 1)
    )
    try:
        with pytest.raises(DataError, match="splits"):
            distill_run(teacher, {"student": "resnet10t", "out": str(tmp_path)}, plugin=ToyPlugin())
    finally:
        (teacher / "splits.csv").write_text(
            (teacher / "splits.csv").read_text().replace("val", "train", 1)
        )


def test_cli_distill_on_a_non_run_folder_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tl.cli", "distill", str(tmp_path), "--student", "resnet10t"],
        capture_output=True,
        text=True,
        env={**os.environ, "TL_VERBOSE": "0"},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: not a finished tl run directory")
