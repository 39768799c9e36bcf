"""What the contract suite needs to know of each plugin: its tiny data, how its
test_predictions.csv lines up with `tl predict`'s output, how its decision follows from its
score at the fitted threshold, and how to damage one input item."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from reliability_data import COMMON, PLUGINS


@dataclass(frozen=True)
class PluginSpec:
    #: writes the tiny dataset under a folder; returns (data path, `tl run` arguments)
    make: Callable[[Path], tuple[Path, list[str]]]
    #: columns that identify an item in both test_predictions.csv and `tl predict` output
    key: list[str]
    #: test_predictions.csv column → `tl predict` column, compared numerically (≤ 1e-5)
    scores: dict[str, str]
    #: test_predictions.csv column → `tl predict` column, compared exactly
    same: dict[str, str] = field(default_factory=dict)
    #: (test_predictions frame, threshold) → the decisions the run should have written, and
    #: the column that holds them; None when the plugin fits no threshold
    decide: Callable[[pd.DataFrame, float], pd.Series] | None = None
    decision_column: str | None = None
    #: copies the data to ``dest`` with one item damaged; returns what to pass as --data
    corrupt: Callable[[Path, Path], Path] | None = None
    #: what `tl predict` reads to score the test items (default: the training data)
    predict_data: Callable[[Path, Path], Path] | None = None
    predict_args: list[str] = field(default_factory=list)
    #: a column to add to `tl predict`'s output holding each row's 0-based position (for
    #: plugins whose test_predictions name items by their row in the input file)
    position_column: str | None = None
    #: `tl predict`'s rows → one row per item in test_predictions.csv's shape
    reshape: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    #: values of an item that `tl predict` lists no row for (a detector that found nothing)
    absent: dict | None = None
    #: test_predictions.csv → the same shape (e.g. parsed detection lists)
    expected: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    common: list[str] = field(default_factory=lambda: [*COMMON, "--epochs", "1"])


def _toy(root: Path) -> tuple[Path, list[str]]:
    from toy_plugin import ToyPlugin

    data = ToyPlugin().demo(root, size="small", seed=0)
    return data, ["--weights", "none", "--batch-size", "24", "--lr", "2e-3"]


def _damage_one_image(data: Path, dest: Path) -> Path:
    shutil.copytree(data, dest)
    images = sorted(p for p in dest.rglob("*") if p.is_file() and p.suffix.lower() in
                    {".png", ".jpg", ".jpeg", ".dcm", ".bmp", ".tif", ".tiff", ""})  # fmt: skip
    victim = images[len(images) // 2]
    victim.write_bytes(victim.read_bytes()[:40])
    return dest


def _damage_one_row(data: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(data)
    column = "amount" if "amount" in frame.columns else frame.columns[-1]
    frame[column] = frame[column].astype(object)
    frame.loc[len(frame) // 2, column] = "not a number"
    out = dest / data.name
    frame.to_csv(out, index=False)
    return out


def _damage_one_user(data: Path, dest: Path) -> Path:
    """Every interaction of one user with an unparsable time: rows are dropped and counted
    at read time, and that user cannot be scored at all."""
    dest.mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(data).astype({"timestamp": object})
    victim = sorted(frame["user_id"].unique())[len(frame["user_id"].unique()) // 2]
    frame.loc[frame["user_id"] == victim, "timestamp"] = "not a time"
    out = dest / data.name
    frame.to_csv(out, index=False)
    return out


def _histories_before_the_test_item(data: Path, root: Path) -> Path:
    """The log without each user's last interaction: what the run's test split ranks from."""
    frame = pd.read_csv(data)
    order = frame.sort_values(["user_id", "timestamp"], kind="stable")
    out = root / "histories.csv"
    order.groupby("user_id", sort=False).head(-1).to_csv(out, index=False)
    return out


def _top10_per_user(frame: pd.DataFrame) -> pd.DataFrame:
    ranked = frame.sort_values(["user_id", "rank"])
    top = ranked.groupby("user_id")["item_id"].apply(lambda items: " ".join(items.head(10)))
    return top.rename("top10").reset_index()


def _detections_per_image(frame: pd.DataFrame) -> pd.DataFrame:
    """`tl predict`'s one row per detection → one row per image: count and sorted scores."""
    rows = []
    for name, group in frame.groupby("file_name", sort=False):
        scores = sorted(group["score"].dropna().round(3), reverse=True)
        rows.append({"item": name, "n_detections": len(scores), "scores": scores})
    return pd.DataFrame(rows)


def _run_detections(frame: pd.DataFrame) -> pd.DataFrame:
    import json

    frame = frame.copy()
    frame["scores"] = [sorted((round(d[4], 3) for d in json.loads(text)), reverse=True)
                       for text in frame["detections"]]  # fmt: skip
    return frame


def _fraud_decide(frame: pd.DataFrame, threshold: float) -> pd.Series:
    return frame["fraud_probability"] >= threshold


def _medical_decide(frame: pd.DataFrame, threshold: float) -> pd.Series:
    labels = [c[2:] for c in frame.columns if c.startswith("p_")]
    return pd.Series(np.where(frame[f"p_{labels[1]}"] >= threshold, labels[1], labels[0]))


SPECS: dict[str, PluginSpec] = {
    "toy": PluginSpec(make=_toy, key=["item"], scores={}, same={"predicted": "predicted"}),
    "medical": PluginSpec(
        make=PLUGINS["medical"],
        key=["item"],
        scores={"p_normal": "p_normal", "p_nodule": "p_nodule"},
        same={"predicted": "predicted"},
        decide=_medical_decide,
        decision_column="predicted",
        corrupt=_damage_one_image,
    ),
    "fraud": PluginSpec(
        make=PLUGINS["fraud"],
        key=["row"],
        position_column="row",
        scores={"fraud_probability": "fraud_probability"},
        same={"alert": "alert"},
        decide=_fraud_decide,
        decision_column="alert",
        corrupt=_damage_one_row,
    ),
    "recsys": PluginSpec(
        make=PLUGINS["recsys"],
        key=["user_id"],
        scores={},
        same={"top10": "top10"},
        predict_data=_histories_before_the_test_item,
        predict_args=["--top-k", "10"],
        reshape=_top10_per_user,
        corrupt=_damage_one_user,
    ),
    "driving": PluginSpec(
        make=PLUGINS["driving"],
        key=["item"],
        scores={},
        same={"n_detections": "n_detections", "scores": "scores"},
        reshape=_detections_per_image,
        expected=_run_detections,
        absent={"n_detections": 0, "scores": []},
        corrupt=_damage_one_image,
    ),
}
