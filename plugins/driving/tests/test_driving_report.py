"""The report's detection preview is legible: wide enough whatever the image size, and a
legend that names each class's colour (synthetic images and detections, no model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tl_driving.report import _save, class_colours, detections_figure, pr_figure

LABELS = ["car", "pedestrian", "cyclist", "traffic_sign"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _inputs(count: int, height: int = 24, width: int = 32):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]
    rows = np.array([[2, 2, 12, 12, 0.9, 0], [14, 4, 30, 20, 0.5, 3], [1, 1, 5, 5, 0.1, 1]])
    truths = np.array([[3, 3, 12, 13]])
    return images, [rows] * count, [truths] * count


@pytest.mark.parametrize("count", [1, 3, 8])
def test_preview_is_at_least_640_px_wide_with_a_legend_per_class(tmp_path: Path, count: int):
    images, rows, truths = _inputs(count)
    fig = detections_figure(images, rows, truths, LABELS)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [*LABELS, "true box"]
    colours = [tuple(h.get_color()) for h in legend.legend_handles[: len(LABELS)]]
    assert len(set(colours)) == len(LABELS)
    assert fig.get_suptitle()
    first = fig.axes[0]
    assert len(first.patches) == 1 + 2  # the true box and the two detections above 0.3
    name = _save(fig, tmp_path / "test_detections.png")
    width, height = Image.open(tmp_path / name).size
    assert width >= 640 and height > 200


def test_class_colours_stay_distinct_for_many_classes():
    assert len(set(class_colours(12))) == 12


def test_class_pr_plot_is_labelled():
    recall = np.linspace(0, 1, 101)
    fig = pr_figure({"recall": recall, "precision": {"car": 1 - recall / 2}}, {"car": 0.7})
    (ax,) = fig.axes
    assert ax.get_title() and ax.get_xlabel() == "recall" and ax.get_ylabel() == "precision"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["car (AP50 0.700)"]


def test_only_the_highest_scoring_boxes_are_drawn():
    from tl_driving.report import BOXES_PER_IMAGE

    images, _, truths = _inputs(1)
    scores = np.linspace(0.31, 0.99, BOXES_PER_IMAGE + 10)
    rows = np.column_stack([np.tile([1, 1, 8, 8], (len(scores), 1)), scores, np.zeros(len(scores))])
    ax = detections_figure(images, [rows], truths, LABELS).axes[0]
    assert len(ax.patches) == 1 + BOXES_PER_IMAGE
    shown = sorted(float(t.get_text()) for t in ax.texts)
    assert shown == sorted(np.round(scores[-BOXES_PER_IMAGE:], 2).tolist())
