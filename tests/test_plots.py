"""Report figures read on their own: a title, axis labels and a legend (or colour bar) saying
what is drawn, integer epoch ticks, a chance line that is right on a log axis. Figures are
built from small synthetic inputs (no training)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from tl.core import ReportSection, plots


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _plotted_axes(fig):
    """Axes that draw data (not colour bars, not switched-off image panels)."""
    return [ax for ax in fig.axes if ax.axison and (ax.lines or ax.images or ax.patches)
            and ax.get_label() != "<colorbar>"]  # fmt: skip


def _legend_texts(fig) -> list[str]:
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def assert_readable(fig) -> None:
    axes = _plotted_axes(fig)
    assert axes, "nothing plotted"
    for ax in axes:
        assert ax.get_title() or fig.get_suptitle(), "no title"
        assert ax.get_xlabel() and ax.get_ylabel(), f"axis labels missing on {ax.get_title()!r}"
        has_colorbar = any(a.get_label() == "<colorbar>" for a in fig.axes)
        assert ax.get_legend() or fig.legends or has_colorbar, f"no legend on {ax.get_title()!r}"


def _integer_ticks(ax) -> bool:
    ax.figure.canvas.draw()
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    return bool(ticks) and all(float(t).is_integer() for t in ticks)


HISTORY = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_auroc": 0.5 + e / 10}
           for e in (1, 2, 3)]  # fmt: skip


def test_training_curves_have_labels_legends_and_integer_epoch_ticks():
    scratch = [{**row, "val_loss": None} for row in HISTORY]  # a missing value is a gap
    fig = plots.history_figure(HISTORY, "auroc", {"from scratch": scratch})
    assert_readable(fig)
    loss, metric = fig.axes
    assert all(_integer_ticks(ax) for ax in (loss, metric))
    assert metric.get_ylabel() == "auroc" and "auroc" in metric.get_title()
    assert {"this run: train loss", "this run: validation loss",
            "from scratch: train loss"} <= set(_legend_texts(fig))  # fmt: skip


def test_training_curves_without_epochs_say_so(tmp_path: Path):
    fig = plots.history_figure([], "accuracy")
    assert any(t.get_text() == "no training epochs" for ax in fig.axes for t in ax.texts)
    assert plots.plot_history([], tmp_path / "h.png", "accuracy") == "h.png"


def test_confusion_matrix_has_axis_names_and_a_colour_bar():
    fig = plots.confusion_figure([[5, 1], [2, 7]], ["healthy", "sick"])
    assert_readable(fig)
    colorbar = next(ax for ax in fig.axes if ax.get_label() == "<colorbar>")
    assert colorbar.get_ylabel() == "test items"


@pytest.mark.parametrize("classes", [2, 3])
def test_roc_names_each_class_and_the_chance_line(classes: int):
    rng = np.random.default_rng(0)
    targets = rng.integers(0, classes, 120)
    probs = rng.dirichlet(np.ones(classes), 120)
    fig = plots.roc_figure(probs, targets, [f"c{i}" for i in range(classes)])
    assert_readable(fig)
    texts = _legend_texts(fig)
    assert "chance (AUC 0.5)" in texts
    assert len(texts) == (2 if classes == 2 else classes + 1)


def test_pr_curves_name_each_scorer_and_the_positive_rate():
    rng = np.random.default_rng(1)
    y = (rng.random(200) < 0.2).astype(int)
    fig = plots.pr_figure({"model": (rng.random(200) + y, y), "baseline": (rng.random(200), y)})
    assert_readable(fig)
    texts = _legend_texts(fig)
    assert [t.split(" (")[0] for t in texts] == ["model", "baseline", "chance"]


def test_image_grid_has_title_legend_colour_bar_and_coloured_titles(tmp_path: Path):
    images = [np.full((16, 16, 3), v) for v in (0.2, 0.5, 0.8)]
    style = dict(title="Grad-CAM", title_colors=["tab:green", "tab:red", "tab:green"],
                 legend={"correct": "tab:green", "wrong": "tab:red"},
                 colorbar=("jet", "influence"))  # fmt: skip
    fig = plots.image_grid_figure(images, ["a", "b", "c"], **style)
    assert fig.get_suptitle() == "Grad-CAM" and _legend_texts(fig) == ["correct", "wrong"]
    panels = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert [ax.title.get_color() for ax in panels] == ["tab:green", "tab:red", "tab:green"]
    name = plots.plot_image_grid(images, ["a", "b", "c"], tmp_path / "grid.png", **style)
    assert Image.open(tmp_path / name).size[0] >= 640


# ------------------------------------------------------------------ plugins' figures
def _chance_line_is_y_equals_x_in_display_space(ax, line) -> None:
    """Sample the line as drawn (display coordinates, straight segments between its points)
    at several x and compare with where y = x lies: correct on any axis scale."""
    shown = ax.transData.transform(np.column_stack(line.get_data()))
    for x in (2e-3, 1e-2, 0.05, 0.3):
        px, py_expected = ax.transData.transform((x, x))
        py = np.interp(px, shown[:, 0], shown[:, 1])
        assert abs(py - py_expected) < 1.0, f"chance line off by {py - py_expected:.1f} px at {x}"


def _fraud_scores(n: int = 4000):
    rng = np.random.default_rng(2)
    y = (rng.random(n) < 0.03).astype(int)
    return y, {"FT-Transformer": rng.normal(size=n) + 2 * y, "gradient boosting": rng.random(n)}


def test_fraud_roc_chance_line_is_right_on_the_log_axis():
    report = pytest.importorskip("tl_fraud.report")
    y, scores = _fraud_scores()
    fig = report.curves_figure(y, scores, (0.5, 0.2, 0.7))
    assert_readable(fig)
    roc = next(ax for ax in fig.axes if ax.get_xscale() == "log")
    chance = next(line for line in roc.lines if line.get_label() == "chance")
    fig.canvas.draw()
    _chance_line_is_y_equals_x_in_display_space(roc, chance)
    low, _ = roc.get_xlim()
    assert low <= 1 / (y == 0).sum()  # one false alert is on the axis
    model = next(line for line in roc.lines if line.get_label() == "FT-Transformer")
    assert np.isfinite(np.log10(model.get_xdata())).all()  # FPR 0 drawn at the left edge
    assert "fraud rate" in " ".join(_legend_texts(fig))


def test_fraud_curves_appear_once_in_the_report(tmp_path: Path):
    report = pytest.importorskip("tl_fraud.report")
    from tl.core.report import write_report

    y, scores = _fraud_scores(600)
    section = report.curve_section(tmp_path, y, scores, (0.5, 0.2, 0.7))
    metrics = {"n_train": 1, "n_val": 1, "n_test": 1, "epochs_run": 1, "train_seconds": 1.0}
    write_report(
        tmp_path,
        SimpleNamespace(name="fraud", monitor="average_precision"),
        {"backbone": "ft_transformer", "weights": "none", "strategy": "full"},
        metrics,
        HISTORY,
        SimpleNamespace(describe=lambda: {}),
        {"trainable_params": 1, "total_params": 1},
        [section, ReportSection("other", "text")],
    )
    text = (tmp_path / "report.md").read_text()
    assert text.count(report.CURVES) == 1 and (tmp_path / report.CURVES).exists()


def test_recsys_ranking_plot_is_labelled():
    report = pytest.importorskip("tl_recsys.report")
    metrics = {"ndcg@10": 0.2, "hit@10": 0.3, "mrr@10": 0.1}
    fig = report.ranking_figure(metrics, {k: v / 2 for k, v in metrics.items()})
    assert_readable(fig)
    assert _legend_texts(fig) == ["SASRec (this run)", "popularity baseline"]
