"""`tl pretrain` → `tl run --weights` → `tl predict`/`tl evaluate` without torch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tl_fraud.demo import HISTORY, generate

NO_TORCH = (
    "import sys; sys.modules['torch'] = None; from tl.cli.main import main; main(sys.argv[1:])"
)
# `sys.modules['torch'] = None` trips scipy's array-API probe (imported by scikit-learn for
# `tl evaluate`); a finder that refuses torch is what a machine without torch looks like.
TORCH_NOT_INSTALLED = (
    "import sys, importlib.abc\n"
    "class Block(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'): raise ModuleNotFoundError(name)\n"
    "sys.meta_path.insert(0, Block())\n"
    "from tl.cli.main import main; main(sys.argv[1:])"
)
SMALL = [
    "--d-token",
    "16",
    "--n-blocks",
    "1",
    "--batch-size",
    "256",
    "--seed",
    "0",
    "--device",
    "cpu",
]


def tl(*args: str, torch: bool = True, blocker: str = NO_TORCH) -> subprocess.CompletedProcess:
    code = "from tl.cli.main import main; import sys; main(sys.argv[1:])" if torch else blocker
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=240
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, market_csv) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    history = generate(HISTORY, 3000, np.random.default_rng(1), "2024-01-01", 60, 0.01)
    history.drop(columns=["is_fraud"]).to_parquet(root / "history.parquet")
    pre = tl("pretrain", "fraud", "--data", str(root / "history.parquet"), "--drop", "transaction_id",
             "--drop", "card_id", "--epochs", "1", "--out", str(root / "runs"), *SMALL)  # fmt: skip
    assert pre.returncode == 0, pre.stderr
    weights = pre.stdout.strip().splitlines()[-1]
    run = tl("run", "fraud", "--data", str(market_csv), "--target", "is_fraud", "--time-column", "ts",
             "--drop", "transaction_id", "--drop", "card_id", "--weights", weights, "--epochs", "2",
             "--compare-scratch", "--out", str(root / "runs"), *SMALL)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return Path(run.stdout.strip().splitlines()[-1])


def test_run_writes_metrics_baseline_report_and_onnx(run_dir: Path):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("average_precision", "roc_auc", "recall_at_1pct_fpr", "threshold", "precision", "recall",
                "alerts_for_90pct_recall"):  # fmt: skip
        assert key in metrics and key in metrics["baseline"]
    assert 0 < metrics["average_precision"] <= 1 and metrics["baseline"]["average_precision"] > 0.2
    assert (
        metrics["onnx_parity"]["max_abs_diff"] < 1e-4 and metrics["onnx_parity"]["agreement"] == 1.0
    )
    assert "installments" in metrics["transfer"]["new_columns"]
    assert "amount" in metrics["transfer"]["shared_columns"]
    report = (run_dir / "report.md").read_text()
    assert "gradient boosting" in report and (run_dir / "fraud_curves.png").exists()
    assert report.count("## Data") == 1 and '"columns"' in report


def test_one_threshold_for_metrics_onnx_and_predictions(run_dir: Path):
    """With --compare-scratch two models are finalized in one process; every output of the
    run is the main model's: metrics.json, the ONNX metadata and test_predictions.csv."""
    import onnx
    from tl_fraud.metrics import fraud_metrics

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "scratch" in metrics and "transfer" not in metrics["scratch"]
    props = {p.key: p.value for p in onnx.load(str(run_dir / "model.onnx")).metadata_props}
    threshold = metrics["threshold"]
    assert json.loads(props["tl"])["threshold"] == threshold
    rows = pd.read_csv(run_dir / "test_predictions.csv")
    assert rows["alert"].tolist() == (rows["fraud_probability"] >= threshold).tolist()
    again = fraud_metrics(rows["fraud_probability"], rows["target"], threshold)
    for key in ("average_precision", "recall", "precision", "alert_rate"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-6), key


def test_predict_and_evaluate_without_torch(run_dir: Path, market_csv: Path, tmp_path: Path):
    today = pd.read_csv(market_csv).drop(columns=["is_fraud"]).head(50)
    today.loc[0, "channel"] = "drone"
    today.to_csv(tmp_path / "today.csv", index=False)
    out = tmp_path / "scores.csv"
    result = tl(
        "predict",
        str(run_dir),
        "--data",
        str(tmp_path / "today.csv"),
        "--out",
        str(out),
        torch=False,
    )
    assert result.returncode == 0, result.stderr
    assert "1 value(s) of 'channel' were not seen" in result.stderr
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["transaction_id", "card_id", "ts", "fraud_probability", "alert"]
    assert scores["transaction_id"].tolist() == today["transaction_id"].tolist()
    assert scores["fraud_probability"].between(0, 1).all()
    result = tl(
        "evaluate",
        str(run_dir),
        "--data",
        str(market_csv),
        torch=False,
        blocker=TORCH_NOT_INSTALLED,
    )
    assert result.returncode == 0, result.stderr
    assert 0 < json.loads(result.stdout)["average_precision"] <= 1


def test_predict_rejects_text_in_numeric_column(run_dir: Path, market_csv: Path, tmp_path: Path):
    bad = pd.read_csv(market_csv).head(5).astype({"amount": object})
    bad.loc[2, "amount"] = "twelve"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    out = tmp_path / "scores.csv"
    result = tl(
        "predict", str(run_dir), "--data", str(tmp_path / "bad.csv"), "--out", str(out), torch=False
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: column 'amount' is numeric but holds text")
    )
    assert not out.exists()


def test_predict_and_evaluate_skip_bad_rows(run_dir: Path, market_csv: Path, tmp_path: Path):
    table = pd.read_csv(market_csv).head(400).astype({"amount": object})
    table.loc[[2, 7], "amount"] = "twelve"
    table.to_csv(tmp_path / "bad.csv", index=False)
    out = tmp_path / "scores.csv"
    args = ("--data", str(tmp_path / "bad.csv"), "--skip-bad")
    result = tl("predict", str(run_dir), *args, "--out", str(out), torch=False)
    assert result.returncode == 0, result.stderr
    assert "skipped 2 unreadable rows (first: 2 — column 'amount' is numeric but holds" in (
        result.stderr
    )
    scores = pd.read_csv(out)
    assert len(scores) == 400 and scores["error"].notna().sum() == 2
    assert sorted(scores.loc[scores["error"].notna(), "row"]) == [2, 7]
    assert scores.loc[scores["error"].isna(), "row"].tolist() == [
        i for i in range(400) if i not in (2, 7)
    ]
    result = tl("evaluate", str(run_dir), *args, torch=False, blocker=TORCH_NOT_INSTALLED)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["skipped"] == 2 and metrics["n_rows"] == 398
