"""Several models trained by one plugin object in one process do not interfere: what each
fits comes back as its own `Fitted`, and neither the plugin nor the data changes."""

import copy
import pickle
from pathlib import Path

import harness
import numpy as np
import pytest
import tl_fraud.report
from tl.core import Fitted
from tl.core.backbones import BackboneSpec
from tl_fraud.metrics import fraud_metrics
from tl_fraud.plugin import FraudPlugin

SMALL = dict(target="is_fraud", drop=("transaction_id", "card_id"), d_token=8, n_blocks=1)


def _outputs(data, rng: np.random.Generator, shift: float) -> dict[str, list]:
    """Fake ``predict_step`` results: scores that rank fraud higher, by ``shift``."""
    outputs = {}
    for split in ("val", "test"):
        targets = np.asarray(getattr(data, split).target, dtype=np.float32)
        scores = 1 / (1 + np.exp(-(shift * targets + rng.normal(size=len(targets)))))
        outputs[split] = [{"score": scores[i : i + 256], "target": targets[i : i + 256]}
                          for i in range(0, len(targets), 256)]  # fmt: skip
    return outputs


def _snapshot(plugin, data) -> bytes:
    state = {
        "plugin": plugin.__dict__,
        "data": {k: v for k, v in data.__dict__.items() if k not in ("train", "val", "test")},
        "tensors": [getattr(data, s).numeric.numpy().tobytes() for s in ("train", "val", "test")],
    }
    return pickle.dumps(copy.deepcopy(state))


@pytest.fixture(scope="module")
def loaded(market_csv: Path):
    plugin = FraudPlugin()
    options = harness.run_config(plugin, market_csv, **SMALL)
    return plugin, plugin.load(market_csv, options), options


def test_two_models_finalized_by_one_plugin_keep_their_own_values(loaded, tmp_path, monkeypatch):
    plugin, data, options = loaded
    before = _snapshot(plugin, data)
    spec = BackboneSpec("ft_transformer", weights="none", options=options)
    first_model = plugin.build_model(spec, data, options)
    first = plugin.finalize(
        first_model, data, _outputs(data, np.random.default_rng(0), 3.0), options
    )
    kept = copy.deepcopy({"m": dict(first.metrics), "e": dict(first.export)})
    kept_scores = np.array(first.artifacts["test_scores"])

    second_model = plugin.build_model(spec, data, options.replace(weights="none"))
    second_outputs = _outputs(data, np.random.default_rng(1), 1.0)
    second = plugin.finalize(second_model, data, second_outputs, options)

    assert isinstance(first, Fitted) and second.export["threshold"] != first.export["threshold"]
    assert copy.deepcopy({"m": dict(first.metrics), "e": dict(first.export)}) == kept
    np.testing.assert_array_equal(first.artifacts["test_scores"], kept_scores)
    assert _snapshot(plugin, data) == before  # neither the plugin nor the data changed
    assert first.metrics["baseline"] == second.metrics["baseline"]  # one baseline per data
    assert first.metrics["baseline"] is not second.metrics["baseline"]

    # test_predictions.csv and the ONNX metadata use the fitted value they are given
    threshold = first.export["threshold"]
    rows = plugin.predictions(_outputs(data, np.random.default_rng(0), 3.0)["test"], data, first)
    assert rows["alert"].tolist() == (rows["fraud_probability"] >= threshold).tolist()
    recomputed = fraud_metrics(rows["fraud_probability"], rows["target"], threshold)
    assert recomputed["recall"] == first.metrics["recall"]
    assert recomputed["average_precision"] == first.metrics["average_precision"]
    spec_out = plugin.export_spec(first_model, data, first, tmp_path)
    assert spec_out.metadata["threshold"] == threshold

    # the report plots the model it is given, not the last one finalized
    plotted = []
    real = tl_fraud.report.curves
    monkeypatch.setattr(tl_fraud.report, "curves", lambda s, t: plotted.append(s) or real(s, t))
    sections = plugin.report(tmp_path, dict(first.metrics), data, first_model, first)
    assert [s.title for s in sections][:2] == ["Model vs gradient-boosting baseline",
                                              "PR and ROC curves"]  # fmt: skip
    assert "Data" not in [s.title for s in sections]  # the core's Data section shows describe()
    np.testing.assert_array_equal(plotted[0], kept_scores)
    assert (tmp_path / "fraud_curves.png").exists()


def test_metrics_are_pure(loaded):
    plugin, data, _ = loaded
    outputs = _outputs(data, np.random.default_rng(2), 2.0)
    before = _snapshot(plugin, data)
    first = plugin.metrics(outputs["val"], data, "val")
    assert plugin.metrics(outputs["val"], data, "val") == first
    assert set(plugin.metrics(outputs["test"], data, "test")) == {
        "average_precision", "roc_auc", "recall_at_1pct_fpr"
    }  # fmt: skip
    assert _snapshot(plugin, data) == before


def test_describe_is_the_one_data_section(loaded):
    _, data, _ = loaded
    described = data.describe()
    assert described["target"] == "is_fraud" and list(described)[-1] == "columns"
    assert set(described["splits"]) == {"train", "val", "test"}
