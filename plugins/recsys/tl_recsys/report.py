"""report.md sections for recsys: data, model vs popularity, and the files written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tl.core import Fitted, ReportSection, atomic_path

from .dataset import RecsysData
from .export import EMBEDDINGS_FILE, write_item_embeddings

METRICS = ("ndcg@10", "hit@10", "mrr@10")
PLOT = "recsys_vs_popularity.png"


def report_sections(
    run_dir: Path, metrics: dict[str, Any], data: RecsysData, model: Any, fitted: Fitted
) -> list[ReportSection]:
    transfer = fitted.artifacts.get("transfer")
    sections = [_data_section(data, transfer), _ranking_section(run_dir, metrics)]
    written = []
    if not (run_dir / EMBEDDINGS_FILE).exists():
        write_item_embeddings(model, run_dir)
        written.append(EMBEDDINGS_FILE)
    if written:
        sections.append(ReportSection("Serving files", "Written: " + ", ".join(written) + "."))
    return sections


def _data_section(data: RecsysData, transfer: dict[str, Any] | None) -> ReportSection:
    info = data.info
    lines = [
        f"- {info['users']} users, {info['items']} items, {info['interactions']} interactions "
        f"(ordered by {info['ordered_by']})",
        f"- histories read up to the last {info['max_len']} items",
    ]
    if info.get("first_k"):
        lines.append(f"- only each user's first {info['first_k']} interactions were used")
    for what, count in info.get("dropped", {}).items():
        lines.append(f"- dropped: {count} {what.replace('_', ' ')}")
    if info.get("test_targets_already_seen"):
        lines.append(
            f"- {info['test_targets_already_seen']} test targets repeat an item of the history "
            "(excluded as seen, so they count as misses)"
        )
    if transfer and transfer.get("items_shared") is not None:
        lines.append(
            f"- transfer: {transfer['items_shared']} of {transfer['items_target']} items share "
            f"learned embeddings with the source ({transfer['items_new']} new, fresh init)"
        )
    return ReportSection("Interaction data", "\n".join(lines))


def _ranking_section(run_dir: Path, metrics: dict[str, Any]) -> ReportSection:
    baseline = metrics.get("baseline", {})
    rows = ["| metric | model | popularity |", "|---|---|---|"]
    for name in METRICS:
        rows.append(f"| {name} | {metrics.get(name, float('nan')):.4f} | "
                    f"{baseline.get(name, float('nan')):.4f} |")  # fmt: skip
    protocol = metrics.get("protocol", {})
    text = "\n".join(rows) + "\n\n" + "; ".join(f"{k}: {v}" for k, v in protocol.items())
    images = []
    if all(name in metrics for name in METRICS):
        _plot(run_dir / PLOT, metrics, baseline)
        images.append(PLOT)
    return ReportSection("Ranking (test users, full catalogue)", text, images)


def _plot(path: Path, metrics: dict[str, Any], baseline: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    fig = ranking_figure(metrics, baseline)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def ranking_figure(metrics: dict[str, Any], baseline: dict[str, Any]) -> Any:
    """The model's and the popularity baseline's test ranking metrics side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(METRICS))
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    model = ax.bar(x - 0.2, [metrics[m] for m in METRICS], 0.4, label="SASRec (this run)")
    popular = ax.bar(x + 0.2, [baseline.get(m, 0.0) for m in METRICS], 0.4,
                     label="popularity baseline")  # fmt: skip
    for bars in (model, popular):
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.set_xticks(x, METRICS)
    ax.set_ylim(0, 1.2 * np.nanmax([0.05, *(b.get_height() for b in (*model, *popular))]))
    ax.set(xlabel="ranking metric (full catalogue, top 10)", ylabel="test score",
           title="Next-item ranking on test users")  # fmt: skip
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig
