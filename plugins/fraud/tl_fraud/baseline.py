"""The honest comparison: scikit-learn's HistGradientBoostingClassifier on the same split.

It sees the same features as the network (raw numeric values with NaN, category codes
with native categorical splits), picks its threshold on validation by the same rule and is
scored on the same test rows.

It depends on the data only, so `baseline_for` fits it once per loaded dataset (the main
model and ``--compare-scratch``'s share it); the cache is keyed by the data object, never
stored on it.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from .metrics import ThresholdRule, choose_threshold, fraud_metrics
from .prepare import PreparedTable

MAX_NATIVE_CATEGORIES = 255


@dataclass(frozen=True)
class Baseline:
    """The baseline's test metrics and its read-only validation/test scores."""

    metrics: Mapping[str, Any]
    scores: Mapping[str, np.ndarray]


_cache: dict[str, Any] = {"data": None, "baseline": None}


def baseline_for(data: Any) -> Baseline:
    """`run_baseline` on ``data`` (a loaded `FraudData`), fitted once per data object."""
    cached = _cache["data"]
    if cached is not None and cached() is data:
        return _cache["baseline"]
    raw = run_baseline(data.prepared, data.rule, data.seed)
    for array in raw["scores"].values():
        array.flags.writeable = False
    baseline = Baseline(MappingProxyType(raw["metrics"]), MappingProxyType(raw["scores"]))
    _cache.update(data=weakref.ref(data), baseline=baseline)
    return baseline


def run_baseline(prepared: PreparedTable, rule: ThresholdRule, seed: int = 0) -> dict[str, Any]:
    """Test metrics of the baseline plus its val/test scores for the report's curves."""
    started = time.time()
    features = np.hstack(
        [prepared.numeric.astype(np.float64), prepared.categorical.astype(np.float64)]
    )
    n_num = prepared.numeric.shape[1]
    native = [
        n_num + j
        for j, size in enumerate(prepared.schema.cardinalities)
        if size <= MAX_NATIVE_CATEGORIES
    ]
    model = HistGradientBoostingClassifier(
        max_iter=300,
        learning_rate=0.06,
        max_leaf_nodes=31,
        l2_regularization=1.0,
        categorical_features=native or None,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=20,
        random_state=seed,
    )
    split = prepared.split
    model.fit(features[split == "train"], prepared.labels[split == "train"])
    scores = {name: model.predict_proba(features[split == name])[:, 1] for name in ("val", "test")}
    threshold = choose_threshold(scores["val"], prepared.labels[split == "val"], rule)
    metrics = fraud_metrics(scores["test"], prepared.labels[split == "test"], threshold)
    metrics["model"] = "HistGradientBoostingClassifier (native categorical)"
    metrics["iterations"] = int(model.n_iter_)
    metrics["train_seconds"] = round(time.time() - started, 2)
    return {"metrics": metrics, "scores": scores}
