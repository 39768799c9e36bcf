"""Report plots (matplotlib, Agg backend).

Each ``*_figure`` function builds one figure (what the tests inspect); the matching ``plot_*``
writes it as a PNG and returns the file's name. Every figure has a title, axis labels and a
legend (or colour bar) saying what is drawn; epoch axes have integer ticks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    from .fileio import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return path.name


def _values(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """One column of the history as floats; a missing or None value is NaN (a gap)."""
    return np.array([np.nan if r.get(key) is None else r[key] for r in rows], dtype=float)


# ------------------------------------------------------------------------ training curves
def history_figure(
    history: Sequence[Mapping[str, Any]],
    monitor: str,
    extra: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> Any:
    """Training (and validation) loss and the monitored validation metric per epoch;
    ``extra``: other runs' histories by name (e.g. ``{"from scratch": rows}``)."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    runs = {"this run": history, **(extra or {})}
    prefix = len(runs) > 1
    for label, rows in runs.items():
        if not rows:
            continue
        name = f"{label}: " if prefix else ""
        epochs = [r["epoch"] for r in rows]
        (line,) = loss_ax.plot(epochs, _values(rows, "train_loss"), marker="o",
                               label=f"{name}train loss")  # fmt: skip
        if any("val_loss" in r for r in rows):
            loss_ax.plot(epochs, _values(rows, "val_loss"), marker="x", linestyle="--",
                         color=line.get_color(), label=f"{name}validation loss")  # fmt: skip
        metric_ax.plot(epochs, _values(rows, f"val_{monitor}"), marker="o",
                       color=line.get_color(), label=f"{label} (validation)")  # fmt: skip
    loss_ax.set(title="Loss per epoch", xlabel="epoch", ylabel="loss")
    metric_ax.set(title=f"Validation {monitor} per epoch", xlabel="epoch", ylabel=monitor)
    for ax in (loss_ax, metric_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no training epochs", ha="center", va="center",
                    transform=ax.transAxes, color="grey")  # fmt: skip
    fig.suptitle("Training curves")
    fig.tight_layout()
    return fig


def plot_history(
    history: Sequence[Mapping[str, Any]],
    path: Path,
    monitor: str,
    extra: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> str:
    """Training loss and the monitored validation metric per epoch (optionally vs other runs)."""
    return _save(history_figure(history, monitor, extra), path)


# ------------------------------------------------------------------------ classification
def confusion_figure(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> Any:
    plt = _pyplot()
    matrix = np.asarray(matrix)
    size = max(4.2, 0.6 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    from matplotlib.ticker import MaxNLocator

    shown = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="test items",
                 ticks=MaxNLocator(integer=True))  # fmt: skip
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted class", ylabel="true class", title="Confusion matrix (test)")
    limit = matrix.max() / 2 if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center",
                color="white" if value > limit else "black")  # fmt: skip
    fig.tight_layout()
    return fig


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path
) -> str:
    """Counts of test items per (true, predicted) class, with a colour bar."""
    return _save(confusion_figure(matrix, labels), path)


def roc_figure(probs: np.ndarray, targets: np.ndarray, labels: Sequence[str]) -> Any:
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    probs, targets = np.asarray(probs), np.asarray(targets)
    onehot = targets if targets.ndim == 2 else np.eye(len(labels), dtype=int)[targets]
    classes = [1] if len(labels) == 2 and targets.ndim == 1 else range(len(labels))
    fig, ax = plt.subplots(figsize=(5, 4.6))
    for c in classes:
        if onehot[:, c].min() == onehot[:, c].max():
            continue  # a class absent from (or the whole of) the test set has no ROC curve
        fpr, tpr, _ = roc_curve(onehot[:, c], probs[:, c])
        auc = roc_auc_score(onehot[:, c], probs[:, c])
        ax.plot(fpr, tpr, label=f"{labels[c]} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance (AUC 0.5)")
    title = "ROC (test)" if len(classes) == 1 else "ROC per class, one vs rest (test)"
    ax.set(xlabel="false positive rate", ylabel="true positive rate (sensitivity)",
           title=title, xlim=(0, 1), ylim=(0, 1.02))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_roc_curves(
    probs: np.ndarray, targets: np.ndarray, labels: Sequence[str], path: Path
) -> str:
    """One-vs-rest ROC curve per class (binary: the positive class)."""
    return _save(roc_figure(probs, targets, labels), path)


def pr_figure(
    scores: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = "Precision–recall (test)"
) -> Any:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.6))
    rates = set()
    for name, (s, y) in scores.items():
        precision, recall, _ = precision_recall_curve(y, s)
        ax.plot(recall, precision, label=f"{name} (AP {average_precision_score(y, s):.3f})")
        rates.add(float(np.mean(y)))
    if len(rates) == 1:  # one set of targets: a random scorer's precision is the positive rate
        rate = rates.pop()
        ax.axhline(rate, color="grey", linestyle=":", label=f"chance (positive rate {rate:.3f})")
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_pr_curves(
    scores: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    title: str = "Precision–recall (test)",
) -> str:
    """PR curves of several scorers: ``{name: (scores, binary_targets)}``."""
    return _save(pr_figure(scores, title), path)


# ------------------------------------------------------------------------ image grids
def image_grid_figure(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    cols: int = 4,
    *,
    title: str | None = None,
    title_colors: Sequence[Any] | None = None,
    legend: Mapping[str, Any] | None = None,
    colorbar: tuple[str, str] | None = None,
) -> Any:
    """``legend``: ``{text: colour}`` drawn as colour patches; ``colorbar``: ``(cmap name,
    label)`` for images coloured with that colormap (e.g. heatmap overlays)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.patches import Patch

    plt = _pyplot()
    cols = max(1, min(cols, len(images)))
    rows = max(1, int(np.ceil(len(images) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols + 0.6, 3.2 * rows + 0.6),
                             squeeze=False, layout="constrained")  # fmt: skip
    for ax in axes.ravel():
        ax.axis("off")
    colors = list(title_colors or []) + ["black"] * len(titles)
    for ax, image, name, color in zip(axes.ravel(), images, titles, colors, strict=False):
        image = np.asarray(image)
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.set_title(name, fontsize=8, color=color)
    if title:
        fig.suptitle(title)
    if colorbar:
        cmap, label = colorbar
        fig.colorbar(ScalarMappable(cmap=cmap), ax=axes, shrink=0.8, label=label)
    if legend:
        handles = [Patch(color=c, label=text) for text, c in legend.items()]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)),
                   fontsize=8)  # fmt: skip
    return fig


def plot_image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    path: Path,
    cols: int = 4,
    **style: Any,
) -> str:
    """Images (H, W) or (H, W, 3) in [0, 1] or uint8 with titles; ``style``: the keyword
    arguments of `image_grid_figure` (figure title, title colours, legend, colour bar)."""
    return _save(image_grid_figure(images, titles, cols, **style), path)
