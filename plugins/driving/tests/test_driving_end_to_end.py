"""`tl run driving` on day scenes, then night fine-tuning from that run, ONNX, and
`tl predict` / `tl evaluate` in a process where importing torch fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TINY_RUN = {
    "epochs": 2, "batch_size": 16, "lr": 3e-3, "weights": "none", "device": "cpu",
    "backbone": "mobilenetv3_small_050", "image_size": 160, "head_channels": 32, "seed": 0,
    "baseline": False,
}  # fmt: skip

NO_TORCH = (
    "import sys; sys.modules['torch'] = None; from tl.cli.main import main; main(sys.argv[1:])"
)


def _run(data: Path, out: Path, **overrides) -> Path:
    import torch
    from tl.core.run import run_plugin
    from tl_driving.plugin import DrivingPlugin

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_plugin(
            DrivingPlugin(), {"data": str(data), "out": str(out), **TINY_RUN, **overrides}
        )
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("runs")
    day = _run(scenes / "day", out)
    night = _run(scenes / "night", out, weights=str(day), epochs=1, baseline=True)
    return day, night


def test_run_writes_detection_metrics_report_and_verified_onnx(runs) -> None:
    day, night = runs
    metrics = json.loads((day / "metrics.json").read_text())
    assert 0 <= metrics["map50_95"] <= metrics["map50"] <= 1
    assert set(metrics["per_class_ap50"]) == {"car", "pedestrian", "cyclist", "traffic_sign"}
    assert metrics["onnx_parity"]["max_abs_diff"] < 1e-2 and metrics["onnx_parity"]["rows"] > 1
    report = (day / "report.md").read_text()
    assert "pr_curves.png" in report and "test_detections.png" in report
    assert (day / "pr_curves.png").stat().st_size > 0
    assert "Weights from" in (night / "report.md").read_text()


def test_torchvision_baseline_column_and_predict_threshold_metadata(runs) -> None:
    import onnx

    day, night = runs
    assert "baseline" not in json.loads((day / "metrics.json").read_text())
    metrics = json.loads((night / "metrics.json").read_text())
    baseline = metrics["baseline"]
    assert baseline["detector"].startswith("torchvision FCOS")
    assert 0 <= baseline["map50_95"] <= baseline["map50"] <= 1 and baseline["train_seconds"] > 0
    assert baseline["epochs_run"] == metrics["epochs_run"] == 1
    report = (night / "report.md").read_text()
    assert "| | tl (this run) | torchvision FCOS |" in report
    assert f"| test mAP50 | {metrics['map50']:.4f} | {baseline['map50']:.4f} |" in report
    props = {p.key: p.value for p in onnx.load(str(night / "model.onnx")).metadata_props}
    meta = json.loads(props["tl"])
    assert meta["inputs"] == [{"name": "images", "column": "image file", "type": "image"}]
    chosen = metrics["val_f1_at_threshold"]["threshold"]
    assert meta["predict_score_threshold"] == chosen and 0 <= chosen <= 1


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, timeout=120
    )


def test_predict_and_evaluate_without_torch(runs, scenes: Path, tmp_path: Path) -> None:
    _, night = runs
    out, drawn = tmp_path / "detections.json", tmp_path / "drawn"
    result = _cli(
        "predict",
        str(night),
        "--data",
        str(scenes / "night"),
        "--out",
        str(out),
        "--draw",
        str(drawn),
    )
    assert result.returncode == 0, result.stderr
    detections = json.loads(out.read_text())
    assert detections and {"image_id", "category_id", "bbox", "score"} <= set(detections[0])
    x, y, w, h = detections[0]["bbox"]
    assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 192.01 and y + h <= 112.01
    assert len(list(drawn.rglob("*.png"))) == 36
    assert "36/36 images (" in result.stderr  # progress, then the total
    result = _cli("evaluate", str(night), "--data", str(scenes / "night"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert 0 <= metrics["map50"] <= 1 and metrics["n_images"] == 36


def test_bad_input_is_one_line_error(runs, scenes: Path, tmp_path: Path) -> None:
    _, night = runs
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "frame.jpg").write_bytes(b"garbage")
    out = tmp_path / "d.json"
    result = _cli("predict", str(night), "--data", str(tmp_path), "--out", str(out))
    assert result.returncode == 2
    assert (
        result.stderr.strip().startswith("error: the image is corrupt")
        and "frame.jpg" in result.stderr
    )
    result = _cli("predict", str(night), "--data", str(tmp_path), "--out", str(out), "--skip-bad")
    assert result.returncode == 2 and "none of the 1 images could be read" in result.stderr
    assert not out.exists()
    good = sorted((scenes / "night" / "images").glob("*.jpg"))[0]
    (tmp_path / "images" / good.name).write_bytes(good.read_bytes())
    result = _cli("predict", str(night), "--data", str(tmp_path), "--out", str(out), "--skip-bad")
    assert result.returncode == 0, result.stderr
    assert "skipped 1 unreadable image (first: images/frame.jpg" in result.stderr
    rows = json.loads(out.read_text())
    assert [r["error"] for r in rows if r["file_name"] == "images/frame.jpg"] == [
        "the image is corrupt or not an image"
    ]
