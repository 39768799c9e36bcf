"""Temperature scaling (Guo et al. 2017): one scalar fitted on validation logits."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64) / temperature))


def fit_temperature(logits: np.ndarray, targets: np.ndarray, multilabel: bool = False) -> float:
    """The temperature T > 0 minimising the validation negative log-likelihood."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets)
    eps = 1e-12

    def nll(log_t: float) -> float:
        t = float(np.exp(log_t))
        if multilabel:
            p = np.clip(sigmoid(logits, t), eps, 1 - eps)
            return float(-np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p)))
        p = softmax(logits, t)
        return float(-np.mean(np.log(p[np.arange(len(targets)), targets] + eps)))

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x)) if result.success else 1.0
