"""Report sections: model vs baseline, PR/ROC curves, transfer. The data (file, rows, column
types, splits, warnings) is in the core's Data section, from `FraudData.describe`.

Everything shown comes from the run's metrics.json values and the main model's `Fitted`
(its test scores and threshold), never from another model trained in the same run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tl.core import Fitted, ReportSection

from .metrics import curves

SHOWN = (
    ("average_precision", "average precision"),
    ("roc_auc", "ROC-AUC"),
    ("recall_at_1pct_fpr", "recall at 1 % FPR"),
    ("alerts_for_90pct_recall", "alerts for 90 % recall"),
    ("threshold", "threshold (from validation)"),
    ("precision", "precision at threshold"),
    ("recall", "recall at threshold"),
    ("alert_rate", "alert rate at threshold"),
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.4f}"
    return "n/a" if value is None else str(value)


def comparison_section(metrics: dict[str, Any]) -> ReportSection:
    baseline = metrics.get("baseline", {})
    lines = ["| test metric | model | gradient boosting |", "|---|---:|---:|"]
    for key, label in SHOWN:
        lines.append(f"| {label} | {_fmt(metrics.get(key))} | {_fmt(baseline.get(key))} |")
    model_ap, base_ap = metrics.get("average_precision"), baseline.get("average_precision")
    if isinstance(model_ap, float) and isinstance(base_ap, float):
        better = "the network" if model_ap > base_ap else "the gradient-boosting baseline"
        lines += ["", f"On this test split {better} has the higher average precision."]
    if metrics.get("threshold_rule"):
        lines += ["", f"Threshold rule: {metrics['threshold_rule']}."]
    return ReportSection("Model vs gradient-boosting baseline", "\n".join(lines))


def sections(run_dir: Path, metrics: dict[str, Any], fitted: Fitted) -> list[ReportSection]:
    found = [comparison_section(metrics)]
    targets = fitted.artifacts.get("test_targets")
    if targets is not None and 0 < targets.sum() < len(targets):
        scores = {"FT-Transformer": fitted.artifacts["test_scores"]}
        if fitted.artifacts.get("baseline_test_scores") is not None:
            scores["gradient boosting"] = fitted.artifacts["baseline_test_scores"]
        point = (metrics.get("recall"), metrics.get("precision"), metrics.get("threshold"))
        found.append(curve_section(Path(run_dir), targets, scores, point))
    if fitted.artifacts.get("transfer"):
        found.append(transfer_section(fitted.artifacts["transfer"]))
    return found


def curve_section(
    run_dir: Path,
    targets: np.ndarray,
    scores: dict[str, np.ndarray],
    operating_point: tuple[Any, Any, Any] | None = None,
) -> ReportSection:
    """PR and ROC curves of each model's test scores; ``operating_point``: the main model's
    (recall, precision, threshold) at its validation threshold, marked on the PR curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (pr, roc) = plt.subplots(1, 2, figsize=(10, 4.2))
    for label, values in scores.items():
        c = curves(values, targets)
        pr.plot(c["recall"], c["precision"], label=label)
        roc.plot(c["fpr"], c["tpr"], label=label)
    recall, precision, threshold = operating_point or (None, None, None)
    if isinstance(recall, float) and isinstance(precision, float):
        pr.plot([recall], [precision], "o", color="black", label=f"alerts at {threshold:.4f}")
    pr.axhline(targets.mean(), color="grey", linestyle=":", label="fraud rate")
    pr.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)")
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
    roc.axvline(0.01, color="grey", linestyle="--", linewidth=0.8)
    roc.set(
        xlabel="false-positive rate",
        ylabel="recall",
        title="ROC (test)",
        xscale="log",
        xlim=(1e-4, 1),
    )
    for ax in (pr, roc):
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    name = "fraud_curves.png"
    fig.savefig(Path(run_dir) / name, dpi=110)
    plt.close(fig)
    return ReportSection("PR and ROC curves", "", [name])


def transfer_section(summary: dict[str, Any]) -> ReportSection:
    lines = [
        f"- shared columns (weights reused): {', '.join(summary.get('shared_columns', [])) or 'none'}",
        f"- new columns (fresh init): {', '.join(summary.get('new_columns', [])) or 'none'}",
        f"- source columns not in this table (dropped): {', '.join(summary.get('dropped_columns', [])) or 'none'}",
        f"- category values with reused embeddings: {summary.get('shared_categories', 0)}",
    ]
    return ReportSection("Transfer from pretrained encoder", "\n".join(lines))
