"""`tl.core.metrics.classification_metrics` against scikit-learn called directly."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from tl.core.metrics import classification_metrics


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, 300)
    logits = rng.normal(size=(300, 4)) + 1.5 * np.eye(4)[targets]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, targets


def test_the_figures_are_scikit_learns(predictions):
    probs, targets = predictions
    out = classification_metrics(probs, targets, ["a", "b", "c", "d"])
    predicted = probs.argmax(1)
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(targets, predicted))
    assert out["macro_f1"] == pytest.approx(skm.f1_score(targets, predicted, average="macro"))
    assert out["auroc"] == pytest.approx(skm.roc_auc_score(targets, probs, multi_class="ovr"))
    assert out["per_class"]["b"]["recall"] == pytest.approx(
        skm.recall_score(targets, predicted, labels=[1], average=None)[0]
    )
    assert out["confusion_matrix"] == skm.confusion_matrix(targets, predicted).tolist()


def test_per_epoch_validation_leaves_out_only_the_per_class_report(predictions):
    probs, targets = predictions
    full = classification_metrics(probs, targets, ["a", "b", "c", "d"])
    scalars = classification_metrics(probs, targets, ["a", "b", "c", "d"], per_class=False)
    assert set(full) - set(scalars) == {"per_class"}
    assert all(scalars[k] == full[k] for k in scalars)
