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


TEACHERS = {
    "lora": {"backbone": "resnet18", "strategy": "lora", "lora_rank": 4, "epochs": 2},
    "prompt": {"backbone": "test_vit2", "strategy": "prompt", "prompt_tokens": 4, "epochs": 2},
    "prototypes": {"backbone": "resnet10t", "strategy": "prototypes", "shots": 10},
}


@pytest.mark.parametrize("strategy", list(TEACHERS))
def test_teachers_of_every_strategy_are_rebuilt_as_their_run_evaluated_them(
    strategy, toy_data, tmp_path
):
    options = toy_options(toy_data, tmp_path / "teacher", **TEACHERS[strategy])
    teacher_run = run_plugin(ToyPlugin(), options)
    flags = {"student": "resnet10t", "epochs": 1, "out": str(tmp_path / "student")}
    run = distill_run(teacher_run, flags, plugin=ToyPlugin())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["onnx_parity"]["max_abs_diff"] < 1e-4
    teacher = metrics["distillation"]["teacher"]
    own = json.loads((teacher_run / "metrics.json").read_text())
    assert teacher["strategy"] == strategy and teacher["metrics_match_run"]
    headline = ["accuracy", "balanced_accuracy", "macro_f1", "auroc", "ece"]
    assert {k: teacher[k] for k in headline} == {k: own[k] for k in headline}
    assert "differ from its run" not in (run / "log.txt").read_text()


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


def test_track_mlflow_without_mlflow_fails_before_any_run_folder(teacher, tmp_path, monkeypatch):
    from tl.core.errors import ConfigError

    monkeypatch.setitem(sys.modules, "mlflow", None)
    flags = {"student": "resnet10t", "out": str(tmp_path / "runs"), "track": "mlflow"}
    with pytest.raises(ConfigError, match="--track mlflow needs MLflow"):
        distill_run(teacher, flags, plugin=ToyPlugin())
    assert not (tmp_path / "runs").exists()


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
