"""Report plots (matplotlib, Agg backend). Each function writes one PNG and returns its name."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    from .fileio import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path.name


def plot_history(
    history: Sequence[dict[str, Any]],
    path: Path,
    monitor: str,
    extra: dict[str, Sequence[dict[str, Any]]] | None = None,
) -> str:
    """Training loss and the monitored validation metric per epoch (optionally vs other runs)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    runs = {"this run": history, **(extra or {})}
    for label, rows in runs.items():
        epochs = [r["epoch"] for r in rows]
        axes[0].plot(
            epochs, [r.get("train_loss") for r in rows], marker="o", label=f"{label} train"
        )
        if rows and "val_loss" in rows[0]:
            axes[0].plot(
                epochs,
                [r.get("val_loss") for r in rows],
                marker="x",
                linestyle="--",
                label=f"{label} val",
            )
        axes[1].plot(epochs, [r.get(f"val_{monitor}") for r in rows], marker="o", label=label)
    axes[0].set(title="loss", xlabel="epoch")
    axes[1].set(title=f"validation {monitor}", xlabel="epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], labels: list[str], path: Path) -> str:
    plt = _pyplot()
    matrix = np.asarray(matrix)
    size = max(3.5, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (test)")
    limit = matrix.max() / 2 if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j, i, str(value), ha="center", va="center", color="white" if value > limit else "black"
        )
    return _save(fig, path)


def plot_roc_curves(probs: np.ndarray, targets: np.ndarray, labels: list[str], path: Path) -> str:
    """One-vs-rest ROC curve per class (binary: the positive class)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    probs, targets = np.asarray(probs), np.asarray(targets)
    onehot = targets if targets.ndim == 2 else np.eye(len(labels), dtype=int)[targets]
    classes = [1] if len(labels) == 2 and targets.ndim == 1 else range(len(labels))
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    for c in classes:
        if onehot[:, c].min() == onehot[:, c].max():
            continue
        fpr, tpr, _ = roc_curve(onehot[:, c], probs[:, c])
        ax.plot(fpr, tpr, label=f"{labels[c]} (AUC {roc_auc_score(onehot[:, c], probs[:, c]):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_pr_curves(
    scores: dict[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    title: str = "precision–recall (test)",
) -> str:
    """PR curves of several scorers: ``{name: (scores, binary_targets)}``."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    for name, (s, y) in scores.items():
        precision, recall, _ = precision_recall_curve(y, s)
        ax.plot(recall, precision, label=f"{name} (AP {average_precision_score(y, s):.3f})")
    ax.set(xlabel="recall", ylabel="precision", title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_image_grid(images: list[np.ndarray], titles: list[str], path: Path, cols: int = 4) -> str:
    """Images (H, W) or (H, W, 3) in [0, 1] or uint8 with titles."""
    plt = _pyplot()
    rows = max(1, int(np.ceil(len(images) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, title in zip(axes.ravel(), images, titles, strict=False):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.set_title(title, fontsize=8)
    return _save(fig, path)
