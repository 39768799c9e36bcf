"""Protocol v2: results are values (two detectors trained by one plugin object do not
interfere) and the runtime hooks under the core's predict/evaluate loop (`--skip-bad`)."""

from __future__ import annotations

import copy
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tl.core import BackboneSpec, Config, DataError, Fitted, RunConfig, load_onnx_model
from tl.core.export import export_onnx
from tl.core.inference import RuntimeConfig, evaluate, predict_to
from tl.core.progress import ProgressReporter
from tl_driving.options import DrivingOptions, DrivingPredictOptions
from tl_driving.plugin import DrivingPlugin

BACKBONE = "mobilenetv3_small_050"


def run_options(**values) -> Config:
    plugin = {"image_size": 160, "head_channels": 32, "baseline": False, **values}
    return Config(RunConfig(seed=0, backbone=BACKBONE), DrivingOptions(**plugin))


@pytest.fixture(scope="module")
def data(scenes):
    return DrivingPlugin().load(scenes / "day", run_options())


def _model(plugin, data, seed: int, **values):
    torch.manual_seed(seed)
    model = plugin.build_model(BackboneSpec(BACKBONE, "none"), data, run_options(**values))
    with torch.no_grad():  # scores near 0.5, so NMS and the thresholds have work to do
        model.head.cls_logits.bias.fill_(0.0)
    return model.eval()


def _outputs(plugin, model, data) -> dict[str, list]:
    outputs = {}
    for split in ("val", "test"):
        dataset = getattr(data, split)
        batch = data.collate([dataset[i] for i in range(min(4, len(dataset)))])
        with torch.inference_mode():
            outputs[split] = [plugin.predict_step(model, batch)]
    return outputs


def test_two_models_of_one_plugin_do_not_interfere(data, tmp_path, one_thread):
    plugin = DrivingPlugin()
    info, splits = copy.deepcopy(data.info), data.splits.copy()
    model_a = _model(plugin, data, 0)
    model_b = _model(plugin, data, 1, score_threshold=0.99, max_det=7, nms_iou=0.3)
    assert (model_a.nms.max_det, model_b.nms.max_det) == (100, 7)

    outputs_a = _outputs(plugin, model_a, data)
    fitted_a = plugin.finalize(model_a, data, outputs_a, run_options())
    curves_a = copy.deepcopy(dict(fitted_a.artifacts["curves"]))
    outputs_b = _outputs(plugin, model_b, data)
    fitted_b = plugin.finalize(model_b, data, outputs_b, run_options(max_det=7))

    assert outputs_a["test"][0]["detections"].shape[1] == 100
    assert outputs_b["test"][0]["detections"].shape[1] == 7
    assert (outputs_b["test"][0]["detections"][..., 5] == -1).all()  # nothing above 0.99
    after = fitted_a.artifacts["curves"]
    for name, curve in curves_a["precision"].items():
        np.testing.assert_array_equal(after["precision"][name], curve)
    assert any(
        not np.array_equal(curve, fitted_b.artifacts["curves"]["precision"].get(name))
        for name, curve in curves_a["precision"].items()
    )
    # export and report read their own model's settings; nothing landed on plugin or data
    meta_a = plugin.export_spec(model_a, data, fitted_a, tmp_path).metadata
    meta_b = plugin.export_spec(model_b, data, fitted_b, tmp_path).metadata
    assert (meta_a["max_det"], meta_a["score_threshold"]) == (100, 0.05)
    assert (meta_b["max_det"], meta_b["score_threshold"], meta_b["iou_threshold"]) == (7, 0.99, 0.3)
    assert vars(plugin) == {}
    assert data.info == info and data.splits.equals(splits)


@pytest.fixture(scope="module")
def onnx_model(data, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plugin = DrivingPlugin()
        model = _model(plugin, data, 0)
        spec = plugin.export_spec(model, data, Fitted(), tmp_path_factory.mktemp("export"))
        path = tmp_path_factory.mktemp("model") / "model.onnx"
        with torch.no_grad():  # a threshold that keeps about half of the detections
            rows = spec.module(torch.from_numpy(spec.batches[0]["images"])).reshape(-1, 6)
        threshold = float(rows[rows[:, 5] >= 0, 4].median())
        meta = {"plugin": "driving", "labels": data.labels, "predict_score_threshold": threshold}
        export_onnx(spec, path, {**meta, **spec.metadata})
    finally:
        torch.set_num_threads(threads)
    return load_onnx_model(path, device="cpu")


def _runtime_options(tmp_path: Path, skip_bad: bool, command: str = "predict", **plugin) -> Config:
    core = RuntimeConfig(data=str(tmp_path), skip_bad=skip_bad)
    return Config(core, DrivingPredictOptions(**plugin), command=command)  # type: ignore[arg-type]


def _folder(scenes: Path, root: Path, bad: bool = True) -> Path:
    """Three night frames with their labels, and one corrupt image (with a label too)."""
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    for image in sorted((scenes / "night" / "images").glob("*.jpg"))[:3]:
        shutil.copy(image, root / "images" / image.name)
        shutil.copy(scenes / "night" / "labels" / f"{image.stem}.txt", root / "labels")
    shutil.copy(scenes / "night" / "data.yaml", root / "data.yaml")
    if bad:
        (root / "images" / "broken.jpg").write_bytes(b"not a jpeg")
        (root / "labels" / "broken.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    return root


def test_skip_bad_predict_counts_the_bad_image(onnx_model, scenes, tmp_path):
    plugin = DrivingPlugin()
    folder = _folder(scenes, tmp_path / "frames")
    with pytest.raises(DataError, match="the image is corrupt") as info:
        predict_to(plugin, onnx_model, folder, _runtime_options(folder, False), None, 2)
    assert "broken.jpg" in info.value.where

    stream, out, drawn = io.StringIO(), tmp_path / "detections.csv", tmp_path / "drawn"
    options = _runtime_options(folder, True, draw=str(drawn))
    reporter = ProgressReporter(stream=stream)
    summary = predict_to(plugin, onnx_model, folder, options, out, 2, reporter)
    assert summary.skipped == 1
    rows = pd.read_csv(out)
    assert list(rows.columns) == [
        "image_id", "file_name", "category_id", "category", "bbox", "score", "error",
    ]  # fmt: skip
    bad = rows[rows["error"].notna()]
    assert bad["file_name"].tolist() == ["images/broken.jpg"]
    assert "corrupt" in bad["error"].iloc[0]
    assert summary.rows == len(rows) - 1 > 0
    assert set(rows["file_name"]) - {"images/broken.jpg"} <= {
        f"images/{p.name}" for p in (folder / "images").glob("night_*.jpg")
    }
    assert "skipped 1 unreadable image (first: images/broken.jpg" in stream.getvalue()
    assert "4/4 images" in stream.getvalue()
    assert len(list(drawn.rglob("*.png"))) == 3


def test_skip_bad_evaluate_counts_the_bad_image(onnx_model, scenes, tmp_path):
    plugin = DrivingPlugin()
    folder = _folder(scenes, tmp_path / "frames")
    stream = io.StringIO()
    metrics = evaluate(
        plugin,
        onnx_model,
        folder,
        _runtime_options(folder, True),
        2,
        ProgressReporter(stream=stream),
    )
    assert metrics["skipped"] == 1 and metrics["n_images"] == 3
    assert 0 <= metrics["map50"] <= 1 and set(metrics["per_class_ap50"]) == {
        "car", "pedestrian", "cyclist", "traffic_sign",
    }  # fmt: skip
    assert "skipped 1 unreadable image" in stream.getvalue()
    clean = _folder(scenes, tmp_path / "clean", bad=False)
    same = evaluate(plugin, onnx_model, clean, _runtime_options(clean, False), 2)
    assert {k: v for k, v in same.items() if k != "skipped"} == {
        k: v for k, v in metrics.items() if k != "skipped"
    }
    json.dumps(metrics)  # what tl evaluate prints


def _scores_by_image(path: Path) -> dict[str, list[float]]:
    rows = pd.read_csv(path)
    return {name: group["score"].tolist() for name, group in rows.groupby("file_name")}


def test_predict_threshold_from_metadata_and_options(onnx_model, scenes, tmp_path):
    """Default: the validation threshold in the metadata; --score-threshold and
    --max-detections override it; tl evaluate scores every detection the graph returns."""
    plugin = DrivingPlugin()
    folder = _folder(scenes, tmp_path / "frames", bad=False)
    assert onnx_model.meta["inputs"] == [
        {"name": "images", "column": "image file", "type": "image"}
    ]

    def predict(name: str, **values) -> dict[str, list[float]]:
        out = tmp_path / f"{name}.csv"
        predict_to(plugin, onnx_model, folder, _runtime_options(folder, False, **values), out, 2)
        return _scores_by_image(out)

    default, everything = predict("default"), predict("all", score_threshold=0.0)
    assert (
        default
        and min(min(s) for s in default.values())
        >= onnx_model.meta["predict_score_threshold"] - 1e-5
    )
    assert sum(map(len, everything.values())) > sum(map(len, default.values()))
    capped = predict("capped", score_threshold=0.0, max_detections=3)
    assert set(capped) == set(everything)
    for name, scores in capped.items():
        assert scores == sorted(everything[name], reverse=True)[:3]

    def scored(**values) -> dict:
        options = _runtime_options(folder, False, "evaluate", **values)
        return evaluate(plugin, onnx_model, folder, options, 2)

    assert scored() == scored(score_threshold=0.0) != scored(score_threshold=0.6)


def test_f1_threshold_known_values():
    from tl_driving.evaluation import f1_threshold

    def rows(*detections):
        out = torch.zeros(1, 6, 6)
        out[0, :, 5] = -1
        for i, row in enumerate(detections):
            out[0, i] = torch.tensor(row, dtype=torch.float32)
        return out

    target = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]),
        "labels": torch.tensor([0, 0]),
        "ignore": torch.tensor([[50.0, 50, 60, 60]]),
    }
    detections = rows(
        [0, 0, 10, 10, 0.9, 0],  # hit
        [50, 50, 60, 60, 0.8, 0],  # in the ignore region: left out
        [70, 70, 80, 80, 0.7, 0],  # miss
        [20, 20, 30, 30, 0.6, 0],  # hit
        [0, 0, 10, 10, 0.5, 0],  # duplicate of a matched box: miss
    )
    chosen = f1_threshold([{"detections": detections, "targets": [target]}])
    # ≥ 0.9: P 1, R 0.5, F1 0.667; ≥ 0.6: P 2/3, R 1, F1 0.8; ≥ 0.5: F1 2·2/(2+4) = 0.667
    assert chosen == {"threshold": 0.6, "f1": 0.8, "precision": 0.6667, "recall": 1.0}
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
             "ignore": torch.zeros(0, 4)}  # fmt: skip
    assert f1_threshold([{"detections": detections, "targets": [empty]}])["f1"] is None
