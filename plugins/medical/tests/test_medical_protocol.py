"""Protocol v2 without training: several models of one plugin object keep their own loss and
fitted values, and the runtime hooks stream images through the core, counting bad ones."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tl.core import DataError, Fitted
from tl.core.config import resolve_config
from tl.core.inference import evaluate, predict_to
from tl.core.progress import ProgressReporter
from tl_medical.demo import write_dataset
from tl_medical.plugin import MedicalPlugin

LABELS = ["nodule", "normal"]


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("protocol") / "scans"
    return write_dataset(root, {"normal": 14, "nodule": 8}, seed=5, image_size=48)


@pytest.fixture(scope="module")
def loaded(scans):
    plugin = MedicalPlugin()
    config = resolve_config(
        plugin, {"data": str(scans), "backbone": "resnet10t", "image_size": 32, "weights": "none"}
    )
    return plugin, config, plugin.load(scans, config)


def _outputs(seed: int, n: int, classes: int = 2) -> list[dict[str, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    targets = torch.from_numpy(np.arange(n) % classes)
    logits = torch.from_numpy(rng.normal(size=(n, classes)) + 2.0 * np.eye(classes)[targets])
    return [{"logits": logits.float(), "targets": targets}]


def _snapshot(fitted: Fitted) -> dict:
    return {
        "metrics": json.dumps(dict(fitted.metrics), default=str, sort_keys=True),
        "export": dict(fitted.export),
        "probs": np.array(fitted.artifacts["test_probs"]),
    }


def test_two_models_of_one_plugin_do_not_interfere(loaded):
    plugin, config, data = loaded
    state_before = dict(vars(plugin))
    info_before, splits_before = copy.deepcopy(data.info), data.splits.copy()

    smooth = config.replace(label_smoothing=0.2, target_sensitivity=0.9)
    first_model = plugin.build_model(_spec(config), data, config)
    second_model = plugin.build_model(_spec(smooth), data, smooth)
    logits, targets = torch.randn(6, 2), torch.tensor([0, 1, 0, 1, 1, 0])
    first_loss = plugin.model_loss(first_model)(logits, targets)
    assert plugin.model_loss(second_model)(logits, targets) != first_loss
    assert plugin.model_loss(first_model)(logits, targets) == first_loss  # unchanged by the second

    first = plugin.finalize(
        first_model, data, {"val": _outputs(1, 40), "test": _outputs(2, 30)}, config
    )
    kept = _snapshot(first)
    second = plugin.finalize(
        second_model, data, {"val": _outputs(3, 40), "test": _outputs(4, 20)}, smooth
    )
    assert second.metrics["threshold_rule"] == "sensitivity ≥ 0.9"
    assert first.metrics["threshold_rule"] == "Youden's J on validation"
    assert second.export["temperature"] != first.export["temperature"]
    now = _snapshot(first)
    assert now["metrics"] == kept["metrics"] and now["export"] == kept["export"]
    np.testing.assert_array_equal(now["probs"], kept["probs"])
    with pytest.raises(ValueError):
        first.artifacts["test_probs"][0, 0] = 0.5  # read-only: no later step can change it
    with pytest.raises(TypeError):
        first.export["threshold"] = 0.1  # type: ignore[index]

    assert dict(vars(plugin)) == state_before  # nothing stored on the plugin
    assert data.info == info_before
    pd.testing.assert_frame_equal(data.splits, splits_before)


def test_the_loss_is_found_through_the_trainers_wrappers(loaded):
    from tl.core.feature_cache import HeadOnly

    plugin, config, data = loaded
    model = plugin.build_model(_spec(config), data, config)
    loss = plugin.model_loss(model)
    assert plugin.model_loss(HeadOnly(model)) is loss  # cached-feature epochs
    assert "loss" not in "".join(model.state_dict())  # not in checkpoints or the ONNX graph


def test_predictions_and_export_read_the_fitted_value(loaded):
    plugin, config, data = loaded
    n = len(data.test)
    targets = data.test.targets
    logits = torch.nn.functional.one_hot(targets, 2).float() * 3
    outputs = {"val": _outputs(1, 40), "test": [{"logits": logits, "targets": targets}]}
    fitted = plugin.finalize(None, data, outputs, config)
    frame = plugin.predictions(outputs["test"], data, fitted)
    assert list(frame.columns) == ["item", "true", "predicted", "p_nodule", "p_normal"]
    assert len(frame) == n and (frame["true"] == frame["predicted"]).all()
    model = plugin.build_model(_spec(config), data, config)
    spec = plugin.export_spec(model, data, fitted, Path("."))
    assert float(spec.module.temperature) == pytest.approx(fitted.export["temperature"])


def _spec(config):
    from tl.core import BackboneSpec

    return BackboneSpec(name=config["backbone"], weights="none", options=config)


class FakeModel:
    """What the runtime hooks see of an exported medical model (metadata and ``run``)."""

    path = Path("model.onnx")
    meta = {
        "plugin": "medical",
        "labels": LABELS,
        "multilabel": False,
        "threshold": 0.5,
        "input": {"height": 32, "width": 32, "channels": 1},
        "preprocessing": {"window": None},
    }

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        image = feeds["image"]
        assert image.dtype == np.uint8 and image.shape[1:] == (1, 32, 32)
        p = image.reshape(len(image), -1).mean(axis=1, keepdims=True) / 255.0
        return {"probabilities": np.hstack([p, 1 - p])}


@pytest.fixture()
def with_bad(scans, tmp_path) -> Path:
    import shutil

    root = tmp_path / "scans"
    shutil.copytree(scans, root)
    (root / "normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


def _quiet() -> ProgressReporter:
    import io

    return ProgressReporter(stream=io.StringIO())


def test_skip_bad_predict_counts_the_bad_image(with_bad, tmp_path):
    plugin, out = MedicalPlugin(), tmp_path / "preds.csv"
    n_files = len([p for p in with_bad.rglob("*") if p.is_file()])
    reporter = _quiet()
    summary = predict_to(plugin, FakeModel(), with_bad, {"skip_bad": True}, out, 4, reporter)
    assert summary.skipped == 1 and summary.rows == n_files - 1
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["item", "predicted", "p_nodule", "p_normal", "error"]
    bad = frame[frame["error"].notna()]
    assert bad["item"].tolist() == ["normal/broken.png"] and "cannot decode" in bad["error"].iloc[0]
    assert "skipped 1 unreadable image" in reporter.stream.getvalue()
    with pytest.raises(DataError, match="broken.png"):
        predict_to(
            plugin, FakeModel(), with_bad, {"skip_bad": False}, tmp_path / "x.csv", 4, _quiet()
        )
    assert not (tmp_path / "x.csv").exists()


def test_skip_bad_evaluate_counts_the_bad_image(with_bad):
    metrics = evaluate(MedicalPlugin(), FakeModel(), with_bad, {"skip_bad": True}, 4, _quiet())
    n_files = len([p for p in with_bad.rglob("*") if p.is_file()])
    assert metrics["skipped"] == 1 and metrics["n"] == n_files - 1
    assert {"accuracy", "auroc", "per_class", "plugin", "model"} <= set(metrics)


def test_predict_streams_a_batch_at_a_time(scans):
    batches = MedicalPlugin().read_batches(FakeModel(), scans, {}, 5)
    assert batches.total == len([p for p in scans.rglob("*") if p.is_file()])
    first = next(iter(batches))
    assert first.inputs["image"].shape == (5, 1, 32, 32) and len(first.items) == 5
