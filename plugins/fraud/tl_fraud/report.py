"""Report sections: model vs baseline, PR/ROC curves, transfer. The data (file, rows, column
types, splits, warnings) is in the core's Data section, from `FraudData.describe`.

Everything shown comes from the run's metrics.json values and the main model's `Fitted`
(its test scores and threshold), never from another model trained in the same run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tl.core import Fitted, ReportSection, atomic_path

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
CURVES = "fraud_curves.png"


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
    (recall, precision, threshold) at its validation threshold, marked on the PR curve. The
    figure is the section's only reference to the image (the core adds it once)."""
    fig = curves_figure(targets, scores, operating_point)
    import matplotlib.pyplot as plt

    with atomic_path(Path(run_dir) / CURVES) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return ReportSection("PR and ROC curves", "", [CURVES])


def fpr_floor(n_negatives: int) -> float:
    """Left end of the log FPR axis: a power of ten at or below the smallest non-zero FPR
    (one false alert), and at most 1e-3 so the 1 % line is well inside."""
    return float(min(1e-3, 10.0 ** np.floor(np.log10(1.0 / max(1, n_negatives)))))


def curves_figure(
    targets: np.ndarray,
    scores: dict[str, np.ndarray],
    operating_point: tuple[Any, Any, Any] | None = None,
) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = np.asarray(targets)
    floor = fpr_floor(int((targets == 0).sum()))
    fig, (pr, roc) = plt.subplots(1, 2, figsize=(10.5, 4.4))
    for label, values in scores.items():
        c = curves(values, targets)
        pr.plot(c["recall"], c["precision"], label=label)
        # FPR 0 lies at -inf on a log axis: those points are drawn on the axis' left edge
        roc.plot(np.maximum(c["fpr"], floor), c["tpr"], label=label)
    recall, precision, threshold = operating_point or (None, None, None)
    if isinstance(recall, float) and isinstance(precision, float) and threshold is not None:
        pr.plot([recall], [precision], "o", color="black",
                label=f"alerts at threshold {threshold:.4f}")  # fmt: skip
    pr.axhline(targets.mean(), color="grey", linestyle=":",
               label=f"chance (fraud rate {targets.mean():.4f})")  # fmt: skip
    pr.set(xlabel="recall", ylabel="precision", title="Precision–recall (test)",
           xlim=(0, 1), ylim=(0, 1.02))  # fmt: skip
    chance = np.logspace(np.log10(floor), 0, 200)  # y = x is a curve on a log x axis
    roc.plot(chance, chance, color="grey", linestyle=":", label="chance")
    roc.axvline(0.01, color="grey", linestyle="--", linewidth=0.8, label="1 % FPR")
    roc.set(xlabel="false-positive rate (log scale)", ylabel="recall (true-positive rate)",
            title="ROC (test)", xscale="log", xlim=(floor, 1), ylim=(0, 1.02))  # fmt: skip
    for ax in (pr, roc):
        ax.grid(alpha=0.3, which="both" if ax is roc else "major")
        ax.legend(loc="best", fontsize=8)
    fig.suptitle("Fraud detection on the test split")
    fig.tight_layout()
    return fig


def transfer_section(summary: dict[str, Any]) -> ReportSection:
    lines = [
        f"- shared columns (weights reused): {', '.join(summary.get('shared_columns', [])) or 'none'}",
        f"- new columns (fresh init): {', '.join(summary.get('new_columns', [])) or 'none'}",
        f"- source columns not in this table (dropped): {', '.join(summary.get('dropped_columns', [])) or 'none'}",
        f"- category values with reused embeddings: {summary.get('shared_categories', 0)}",
    ]
    return ReportSection("Transfer from pretrained encoder", "\n".join(lines))
