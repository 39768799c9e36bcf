"""Report sections: data and column types, model vs baseline, PR/ROC curves, transfer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tl.core import ReportSection

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


def data_section(info: dict[str, Any]) -> ReportSection:
    lines = [
        f"File `{info.get('file')}`: {info.get('rows_read')} rows read, {info.get('rows_used')} used. "
        f"Target `{info.get('target')}` (fraud = `{info.get('positive_label')}`). "
        f"Split: {info.get('split_rule')}.",
        "",
        "| split | rows | fraud |",
        "|---|---:|---:|",
    ]
    for name, counts in info.get("splits", {}).items():
        lines.append(f"| {name} | {counts['rows']} | {counts['fraud']} |")
    lines += ["", "| column | type |", "|---|---|"]
    lines += [f"| {name} | {kind} |" for name, kind in info.get("columns", {}).items()]
    warnings = info.get("warnings", {})
    if warnings:
        lines += ["", "Warnings:"]
        lines += [f"- {what}: {count}" for what, count in warnings.items()]
    return ReportSection("Data", "\n".join(lines))


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


def curve_section(
    run_dir: Path, targets: np.ndarray, scores: dict[str, np.ndarray]
) -> ReportSection:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (pr, roc) = plt.subplots(1, 2, figsize=(10, 4.2))
    for label, values in scores.items():
        c = curves(values, targets)
        pr.plot(c["recall"], c["precision"], label=label)
        roc.plot(c["fpr"], c["tpr"], label=label)
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
    return ReportSection("PR and ROC curves", f"![PR and ROC curves]({name})", [name])


def transfer_section(summary: dict[str, Any]) -> ReportSection:
    lines = [
        f"- shared columns (weights reused): {', '.join(summary.get('shared_columns', [])) or 'none'}",
        f"- new columns (fresh init): {', '.join(summary.get('new_columns', [])) or 'none'}",
        f"- source columns not in this table (dropped): {', '.join(summary.get('dropped_columns', [])) or 'none'}",
        f"- category values with reused embeddings: {summary.get('shared_categories', 0)}",
    ]
    return ReportSection("Transfer from pretrained encoder", "\n".join(lines))
