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
from tl_recsys.options import RecsysPredictOptions

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
    """Ids in, ids out: seen items never come back, the scores are the item embeddings'
    dot products, and an id the model does not know changes nothing."""
    model = load_onnx_model(run_dir, device="cpu")
    assert model.meta["k"] == 20 and model.meta["plugin"] == "recsys"
    session = ort.InferenceSession(str(run_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    ids = np.asarray(["", *model.meta["items"]], dtype=object)
    n_items = len(ids) - 1
    embeddings = np.load(run_dir / "item_embeddings.npy")
    for batch, length in ((1, 3), (5, 17), (2, 40)):
        history = rng.integers(1, n_items + 1, (batch, length)).astype(np.int64)
        history[0, : length // 2] = 0  # left padding
        top, scores, user = session.run(None, {"item_history": ids[history]})
        assert top.shape == (batch, 20) and top.dtype == object
        for row in range(batch):
            assert not set(top[row]) & set(ids[history[row]])
            full = user[row] @ embeddings.T
            full[history[row]] = -np.inf
            full[0] = -np.inf
            np.testing.assert_allclose(np.sort(full)[::-1][:20], scores[row], rtol=1e-4, atol=1e-4)
            index = [int(np.flatnonzero(ids == item)[0]) for item in top[row]]
            np.testing.assert_allclose(full[index], scores[row], rtol=1e-4, atol=1e-4)
        noisy = np.concatenate([np.full((batch, 1), "not-an-item", object), ids[history]], axis=1)
        noisy[:, length // 2] = "another unknown id"
        kept = np.concatenate([np.full((batch, 1), "", object), ids[history]], axis=1)
        kept = np.concatenate([np.full((batch, 1), "", object), np.delete(kept, length // 2, 1)], 1)
        again = session.run(None, {"item_history": noisy})
        reference = session.run(None, {"item_history": kept})
        assert (again[0] == reference[0]).all()
        np.testing.assert_allclose(again[1], reference[1], atol=1e-5)


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


def _predict(plugin, model, path: Path, **values) -> pd.DataFrame:
    """`tl predict`'s rows through the core's runtime loop (as the CLI calls it)."""
    from tl.core.inference import predict_to

    out = path.with_name(path.stem + "_recs.csv")
    options = {**RecsysPredictOptions().__dict__, "skip_bad": False, **values}
    predict_to(plugin, model, path, options, out, batch_size=64)
    return pd.read_csv(out)


def test_runtime_bad_input(plugin, run_dir: Path, demo_dir: Path, tmp_path: Path) -> None:
    model = load_onnx_model(run_dir, device="cpu")
    with pytest.raises(ConfigError, match="top-k"):
        _predict(plugin, model, demo_dir / "recent.csv", top_k=500)
    bad = tmp_path / "bad.csv"
    bad.write_text("customer,product\n1,2\n")
    with pytest.raises(DataError, match="user_id"):
        _predict(plugin, model, bad)
    done = _cli("predict", str(run_dir), "--data", str(bad))
    assert done.returncode == 2 and done.stderr.startswith(
        "error: column 'user_id' is not in the data"
    )


def _log_with_bad_rows(demo_dir: Path, tmp_path: Path) -> Path:
    """recent.csv plus a user whose only rows lack an item id, a row without a user id and
    a row with an unparsable timestamp."""
    log = tmp_path / "log.csv"
    text = (demo_dir / "recent.csv").read_text()
    first_user = text.splitlines()[1].split(",")[0]
    log.write_text(
        text + "zz_lost,,2024-01-01 00:00:00\nzz_lost,,2024-01-02 00:00:00\n"
        f",i00001,2024-01-03 00:00:00\n{first_user},i00002,not a date\n"
    )
    return log


def test_skip_bad_predict_counts_the_user_that_cannot_be_scored(
    run_dir: Path, demo_dir: Path, tmp_path: Path
) -> None:
    log = _log_with_bad_rows(demo_dir, tmp_path)
    done = _cli("predict", str(run_dir), "--data", str(log), "--out", str(tmp_path / "r.csv"))
    assert done.returncode == 2, done.stderr
    assert "zz_lost" in done.stderr and "--skip-bad" in done.stderr

    out = tmp_path / "recs.csv"
    done = _cli("predict", str(run_dir), "--data", str(log), "--skip-bad", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "skipped 1 unreadable user (first: zz_lost" in done.stderr
    assert "dropped 4 of " in done.stderr  # rows: 2 without item, 1 without user, 1 bad time
    assert "rows with missing id: 3" in done.stderr
    assert "rows with unparsable timestamp: 1" in done.stderr
    recs = pd.read_csv(out)
    lost = recs[recs["user_id"] == "zz_lost"]
    assert len(lost) == 1 and lost["error"].iloc[0].startswith("every row was dropped")
    assert recs.loc[recs["user_id"] != "zz_lost", "error"].isna().all()
    recent = pd.read_csv(demo_dir / "recent.csv")
    assert set(recs["user_id"]) == set(recent["user_id"]) | {"zz_lost"}


def test_evaluate_reports_dropped_rows_and_skipped_users(
    run_dir: Path, demo_dir: Path, tmp_path: Path
) -> None:
    log = _log_with_bad_rows(demo_dir, tmp_path)
    with log.open("a") as fh:
        fh.write("zz_once,i00003,2024-01-04 00:00:00\n")  # one interaction: no target
    done = _cli("evaluate", str(run_dir), "--data", str(log), "--skip-bad")
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    assert metrics["skipped"] == 2  # zz_lost and zz_once
    assert metrics["notes"]["rows_dropped"] == 4
    assert metrics["notes"]["rows_with_missing_id"] == 3
    assert metrics["notes"]["rows_with_unparsable_timestamp"] == 1
    assert "dropped 4 of " in done.stderr and "skipped 2 unreadable users" in done.stderr
    assert metrics["n_users"] == pd.read_csv(demo_dir / "recent.csv")["user_id"].nunique()


def test_finalize_twice_does_not_interfere(plugin, demo_dir: Path, config) -> None:
    """Two models trained by one plugin object: each Fitted is its own value, data unchanged."""
    import copy

    from tl.core import BackboneSpec

    options = config(d_model=16, layers=1, heads=1, max_len=10, top_k=20)
    data = plugin.load(demo_dir / "market_b.csv", options)
    info, plugin_state = copy.deepcopy(data.info), copy.deepcopy(vars(plugin))
    first_model = plugin.build_model(BackboneSpec("sasrec"), data, options)
    first_model.transfer_summary = {"items_shared": 3, "items_target": 9, "items_new": 6}
    first = plugin.finalize(first_model, data, {"val": [], "test": []}, options)
    snapshot = {
        k: copy.deepcopy(dict(getattr(first, k))) for k in ("metrics", "export", "artifacts")
    }
    second_model = plugin.build_model(BackboneSpec("sasrec"), data, options)
    second = plugin.finalize(second_model, data, {"val": [], "test": []}, options.replace(top_k=7))
    assert {k: dict(getattr(first, k)) for k in snapshot} == snapshot
    assert first.export["k"] == 20 and second.export["k"] == 7
    assert second.artifacts["transfer"] is None
    assert data.info == info and vars(plugin) == plugin_state
    with pytest.raises(TypeError):
        first.export["k"] = 1  # type: ignore[index]


@pytest.mark.slow
def test_config_yaml_reproduces_the_run(plugin, run_dir: Path, tmp_path: Path) -> None:
    import torch
    from tl.core.run import run_plugin

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same as the fixture's run
    try:
        again = run_plugin(plugin, {"config": str(run_dir / "config.yaml"), "out": str(tmp_path)})
    finally:
        torch.set_num_threads(threads)

    def stable(value):  # timings differ between runs; nothing else may
        if isinstance(value, dict):
            return {k: stable(v) for k, v in value.items() if not k.endswith("seconds")}
        return value

    metrics = [json.loads((d / "metrics.json").read_text()) for d in (again, run_dir)]
    assert stable(metrics[0]) == stable(metrics[1])
