"""report.md: the run in words, tables and plots. The core writes the shared sections;
plugins add theirs as `ReportSection`s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .fileio import write_text_atomic
from .plots import plot_history
from .plugin import Plugin, ReportSection, TLData


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _scalar_table(metrics: dict[str, Any], keys: list[str] | None = None) -> str:
    keys = keys or [
        k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    rows = ["| metric | value |", "|---|---:|"]
    rows += [f"| {k} | {_fmt(metrics[k])} |" for k in keys if k in metrics]
    return "\n".join(rows)


def weights_phrase(weights: Any) -> str:
    """What ``--weights`` meant, in words: a report must say what happened."""
    weights = str(weights)
    if weights == "none":
        return "none (random init)"
    if weights == "hub":
        return "timm hub (pretrained)"
    return f"`{Path(weights).name}` (tl weights file or run)"


def write_report(
    run_dir: Path,
    plugin: Plugin,
    options: Any,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    data: TLData,
    train_info: dict[str, Any],
    sections: list[ReportSection],
    scratch_history: list[dict[str, Any]] | None = None,
) -> Path:
    parts = [f"# tl run — {plugin.name}", ""]
    parts += [
        f"Backbone **{options['backbone']}**, weights: {weights_phrase(options['weights'])}, "
        f"strategy **{options['strategy']}**; {train_info['trainable_params']:,} of "
        f"{train_info['total_params']:,} parameters trainable "
        f"({100 * train_info['trainable_params'] / max(1, train_info['total_params']):.1f} %).",
        "",
        (
            f"No gradient training: class prototypes built in {metrics.get('train_seconds')} s."
            if metrics.get("epochs_run") == 0
            else f"Trained {metrics.get('epochs_run')} epochs in {metrics.get('train_seconds')} s; "
            f"best epoch {metrics.get('best_epoch')} by validation `{plugin.monitor}`."
        ),
        "",
        "## Data",
        "",
        f"{metrics['n_train']} train / {metrics['n_val']} val / {metrics['n_test']} test items "
        "(which item went where: `splits.csv`).",
        "",
    ]
    described = data.describe()
    if described:
        parts += ["```json", json.dumps(described, indent=2, default=str)[:4000], "```", ""]
    if train_info.get("loaded") is not None:
        parts += [
            f"Weights from `{Path(train_info['source']).name}`: {train_info['loaded']} tensors loaded, "
            f"{train_info['skipped']} not fitting this model (new head / new inputs) left at their initialisation.",
            "",
        ]
        parts += [f"{note}.\n" for note in train_info.get("weights_notes", [])]

    parts += ["## Test metrics", "", _scalar_table(metrics, _headline_keys(metrics)), ""]

    extra = {"from scratch": scratch_history} if scratch_history else None
    curves = plot_history(history, run_dir / "training_curves.png", plugin.monitor, extra)
    parts += ["## Training", "", f"![training curves]({curves})", ""]

    if "scratch" in metrics:
        parts += ["## Transfer vs from scratch", ""]
        keys = [k for k in _headline_keys(metrics) if isinstance(metrics["scratch"].get(k), float)]
        parts += ["| metric | transferred | from scratch | gain |", "|---|---:|---:|---:|"]
        for key in keys:
            parts.append(
                f"| {key} | {_fmt(metrics[key])} | {_fmt(metrics['scratch'][key])} | {_fmt(metrics['transfer_gain'].get(key, float('nan')))} |"
            )
        parts.append("")

    for section in sections:
        parts += [f"## {section.title}", ""]
        if section.markdown:
            parts += [section.markdown, ""]
        parts += [f"![{Path(img).stem}]({img})" for img in section.images]
        parts.append("")

    parity = metrics.get("onnx_parity", {})
    parts += [
        "## Export",
        "",
        f"`model.onnx` ({parity.get('exporter', '?')} exporter): on {parity.get('rows', '?')} test items the max abs "
        f"difference to PyTorch is {parity.get('max_abs_diff', float('nan')):.2e} "
        f"(tolerance {parity.get('tolerance', 0):.0e})"
        + (
            f", decision agreement {parity['agreement']:.4f}."
            if parity.get("agreement") is not None
            else "."
        ),
        "",
        f"Predict without torch: `tl predict {run_dir} --data NEW_DATA --out predictions.csv`.",
        "",
    ]
    return write_text_atomic(run_dir / "report.md", "\n".join(parts))


_NOT_HEADLINE = {
    "n_train",
    "n_val",
    "n_test",
    "trainable_params",
    "total_params",
    "epochs_run",
    "best_epoch",
    "train_seconds",
}


def _headline_keys(metrics: dict[str, Any]) -> list[str]:
    return [
        k
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _NOT_HEADLINE
    ]
