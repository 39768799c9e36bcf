"""Model, loss, post-processing, metrics and the ONNX graph (through the core's exporter)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tl.core import BackboneSpec, Config, Fitted, RunConfig
from tl.core.export import export_onnx
from tl_driving.coco_eval import coco_ground_truth, coco_map
from tl_driving.evaluation import detection_metrics
from tl_driving.loss import assign, detection_loss
from tl_driving.model import build_detector, level_points
from tl_driving.options import DrivingOptions
from tl_driving.plugin import DrivingPlugin
from tl_driving.records import ImageRecord

LABELS = ["car", "pedestrian", "cyclist", "traffic_sign"]


def options(**values) -> Config:
    return Config(RunConfig(seed=0), DrivingOptions(**{"image_size": 160, **values}))


@pytest.fixture(scope="module")
def data(scenes):
    return DrivingPlugin().load(scenes / "day", options())


def _model(channels=32):
    torch.manual_seed(0)
    return build_detector(BackboneSpec("mobilenetv3_small_050", "none"), len(LABELS), channels)


def test_forward_shapes_and_loss_backward(data, one_thread):
    plugin = DrivingPlugin()
    images, targets = data.collate([data.train[i] for i in range(4)])
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 96, 160)
    model = _model()
    logits, distances, centers = model(images)
    n = sum((96 // s) * (160 // s) for s in (8, 16, 32))
    assert logits.shape == (4, n, 4) and distances.shape == (4, n, 4) and centers.shape == (4, n)
    assert (distances > 0).all()
    loss = plugin.training_step(model, (images, targets))
    loss.backward()
    assert torch.isfinite(loss) and model.backbone.conv_stem.weight.grad.abs().sum() > 0


def test_assignment_picks_level_and_respects_ignore():
    points, strides = level_points(96, 160)
    small = torch.tensor([[40.0, 40.0, 60.0, 60.0]])
    big = torch.tensor([[0.0, 0.0, 150.0, 96.0]])
    match, _, counted = assign(points, strides, small, torch.zeros(0, 4))
    assert set(strides[match >= 0].tolist()) == {8.0}
    match, _, _ = assign(points, strides, big, torch.zeros(0, 4))
    assert set(strides[match >= 0].tolist()) == {32.0}
    ignore = torch.tensor([[100.0, 0.0, 160.0, 96.0]])
    match, _, counted = assign(points, strides, small, ignore)
    inside = (points[:, 0] > 100) & (match < 0)
    assert not counted[inside].any() and counted[~inside].all()


def test_loss_without_objects_is_finite(one_thread):
    points, strides = level_points(64, 64)
    model = _model()
    outputs = model(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))
    empty = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.long),
        "ignore": torch.zeros(0, 4),
    }
    losses = detection_loss(outputs, [empty, empty], points, strides)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and losses["box"] == 0


def _target(boxes, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.long),
        "ignore": torch.zeros(0, 4),
        "image_id": torch.tensor(0),
    }


def _padded(rows, max_det=5):
    out = torch.zeros(1, max_det, 6)
    out[0, :, 5] = -1
    for i, row in enumerate(rows):
        out[0, i] = torch.tensor(row, dtype=torch.float32)
    return out


def test_map_known_values_and_runtime_evaluator_agrees():
    truth = [_target([[10, 10, 50, 50], [60, 10, 90, 60]], [0, 1]), _target([[5, 5, 40, 30]], [0])]
    detections = [
        _padded([[10, 10, 50, 50, 0.9, 0], [60, 10, 90, 60, 0.8, 1]]),
        _padded([[100, 100, 120, 120, 0.95, 0], [5, 5, 40, 30, 0.7, 0]]),
    ]
    outputs = [{"detections": d, "targets": [t]} for d, t in zip(detections, truth, strict=True)]
    metrics, curves = detection_metrics(outputs, LABELS)
    assert metrics["per_class_ap50"]["pedestrian"] == pytest.approx(1.0)
    # car: ranks 0.95 (false), 0.9 (true), 0.7 (true) → COCO 101-point AP = 2/3 precision
    assert metrics["per_class_ap50"]["car"] == pytest.approx(2 / 3, abs=0.01)
    assert metrics["map50"] == pytest.approx((1 + 2 / 3) / 2, abs=0.01)
    assert metrics["per_class_ap50"]["cyclist"] is None
    records = [
        ImageRecord(None, 128, 128, t["boxes"].numpy(), t["labels"].numpy(), image_id=i)
        for i, t in enumerate(truth)
    ]
    coco = [
        {
            "image_id": i,
            "category_id": int(r[5]) + 1,
            "bbox": [float(r[0]), float(r[1]), float(r[2] - r[0]), float(r[3] - r[1])],
            "score": float(r[4]),
        }
        for i, d in enumerate(detections)
        for r in d[0]
        if r[5] >= 0
    ]
    runtime = coco_map(coco_ground_truth(records, LABELS), coco, LABELS)
    assert runtime["map50"] == pytest.approx(metrics["map50"], abs=1e-6)
    assert runtime["map50_95"] == pytest.approx(metrics["map50_95"], abs=1e-6)


def test_onnx_graph_matches_torch_with_dynamic_batch_and_empty_image(data, tmp_path, one_thread):
    import onnxruntime as ort

    plugin = DrivingPlugin()
    model = _model().eval()
    with torch.no_grad():  # a non-trivial head so NMS and padding have work to do
        model.head.cls_logits.bias.fill_(0.0)
    spec = plugin.export_spec(model, data, Fitted(), tmp_path)
    assert len(spec.batches[0]["images"]) > 1
    parity = export_onnx(spec, tmp_path / "model.onnx", {"plugin": "driving", **spec.metadata})
    assert parity["max_abs_diff"] < 1e-2
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    for size in (1, 3, 6):
        images = np.stack([data.test[i % len(data.test)][0].numpy() for i in range(size)])
        out = session.run(None, {"images": images})[0]
        with torch.no_grad():
            ref = spec.module(torch.from_numpy(images)).numpy()
        assert out.shape == (size, 100, 6)
        np.testing.assert_allclose(out, ref, atol=1e-2)
    blank = np.full((2, 3, 96, 160), 114, np.uint8)
    out = session.run(None, {"images": blank})[0]
    valid = out[..., 5] >= 0
    assert (out[~valid][:, :5] == 0).all()
    assert (np.diff(out[..., 4], axis=1) <= 1e-6).all()  # best first
