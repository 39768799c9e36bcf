"""`tl run` → ONNX (top-k and seen-masking in the graph) → `tl predict`/`evaluate` without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from tl.core import ConfigError, DataError, load_onnx_model

TINY_RUN = {
    "epochs": 2, "batch_size": 64, "lr": 3e-3, "weights": "none", "device": "cpu",
    "d_model": 16, "layers": 1, "heads": 1, "max_len": 10, "top_k": 20,
}  # fmt: skip

NO_TORCH = (
    "import sys; sys.modules['torch'] = None; from tl.cli.main import main; main(sys.argv[1:])"
)


@pytest.fixture(scope="module")
def run_dir(plugin, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from tl.core.run import run_plugin

    out = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see conftest.one_torch_thread
    try:
        options = {"data": str(demo_dir / "market_b.csv"), "out": str(out), **TINY_RUN}
        return run_plugin(plugin, options)
    finally:
        torch.set_num_threads(threads)


def test_run_writes_metrics_with_baseline_and_serving_files(run_dir: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("ndcg@10", "hit@10", "mrr@10"):
        assert 0 <= metrics[key] <= 1 and 0 <= metrics["baseline"][key] <= 1
    assert metrics["protocol"]["ranking"].startswith("full ranking")
    assert metrics["onnx_parity"]["max_abs_diff"] < 1e-3
    assert "popularity" in (run_dir / "report.md").read_text()
    predictions = pd.read_csv(run_dir / "test_predictions.csv")
    assert len(predictions) == metrics["n_test"]
    assert np.load(run_dir / "item_embeddings.npy").shape[1] == 17


def test_onnx_graph_masks_history_and_matches_item_embeddings(run_dir: Path) -> None:
    model = load_onnx_model(run_dir, device="cpu")
    assert model.meta["k"] == 20 and model.meta["plugin"] == "recsys"
    session = ort.InferenceSession(str(run_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    n_items = len(model.meta["items"])
    embeddings = np.load(run_dir / "item_embeddings.npy")
    for batch, length in ((1, 3), (5, 17), (2, 40)):
        history = rng.integers(1, n_items + 1, (batch, length)).astype(np.int64)
        history[0, : length // 2] = 0  # left padding
        top, scores, user = session.run(None, {"item_history": history})
        assert top.shape == (batch, 20)
        for row in range(batch):
            assert not set(top[row]) & set(history[row])
            full = user[row] @ embeddings.T
            full[history[row]] = -np.inf
            full[0] = -np.inf
            np.testing.assert_allclose(np.sort(full)[::-1][:20], scores[row], rtol=1e-4, atol=1e-4)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, timeout=120
    )


def test_predict_and_evaluate_without_torch(run_dir: Path, demo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "recs.csv"
    done = _cli("predict", str(run_dir), "--data", str(demo_dir / "recent.csv"), "--top-k", "5",
                "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    recs = pd.read_csv(out)
    recent = pd.read_csv(demo_dir / "recent.csv")
    assert set(recs["user_id"]) == set(recent["user_id"])
    users = recent["user_id"].nunique()
    assert f"{users:,}/{users:,} users (" in done.stderr  # progress, then the total
    assert recs.groupby("user_id").size().max() == 5
    assert set(recs["item_id"]) <= set(
        json.loads(json.dumps(load_onnx_model(run_dir).meta["items"]))
    )
    seen = recent.groupby("user_id")["item_id"].apply(set)
    assert not any(row.item_id in seen[row.user_id] for row in recs.itertuples())

    done = _cli("evaluate", str(run_dir), "--data", str(demo_dir / "recent.csv"))
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    assert {"ndcg@10", "hit@10", "mrr@10", "baseline", "protocol"} <= set(metrics)


def test_runtime_bad_input(plugin, run_dir: Path, demo_dir: Path, tmp_path: Path) -> None:
    model = load_onnx_model(run_dir, device="cpu")
    with pytest.raises(ConfigError, match="top-k"):
        plugin.predict(model, demo_dir / "recent.csv", {"top_k": 500})
    bad = tmp_path / "bad.csv"
    bad.write_text("customer,product\n1,2\n")
    with pytest.raises(DataError, match="user_id"):
        plugin.predict(model, bad, {})
    done = _cli("predict", str(run_dir), "--data", str(bad))
    assert done.returncode == 2 and done.stderr.startswith("error: column 'user_id' not found")
