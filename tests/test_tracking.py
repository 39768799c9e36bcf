"""``--track mlflow`` without training: what `tl.core.tracking.track_run` sends to MLflow
(SQLite) for a run directory, how a run's end maps to MLflow's states, and the one-line
error without MLflow. Tracking of real trained runs (nested under a `tl tune` study) is
checked in tests/test_tune.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from cli_inprocess import invoke


@pytest.fixture(scope="module")
def tracking_db(tmp_path_factory):
    """One SQLite store for the module (creating one runs MLflow's migrations: seconds)."""
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root / 'mlflow.db'}", root


@pytest.fixture
def tracked(tracking_db, tmp_path, monkeypatch):
    """A fresh experiment of that store, as MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_NAME."""
    import mlflow

    uri, root = tracking_db
    client = mlflow.MlflowClient(uri)
    name = tmp_path.name
    client.create_experiment(name, artifact_location=(root / name).as_uri())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", name)
    client.experiment = client.get_experiment_by_name(name).experiment_id
    return client


def _run_dir(root: Path, name: str) -> Path:
    run = root / name
    run.mkdir()
    config = {"plugin": "recsys", "backbone": "sasrec", "strategy": "full", "lr": 0.003,
              "drop": ["a", "b"], "track": "mlflow"}  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "manifest.json").write_text(json.dumps({"git_sha": "abc123", "status": "running"}))
    return run


def _epochs(callbacks, rows):
    for callback in callbacks:
        callback.on_fit_start(None, None)
        for row in rows:
            callback.on_validation_end(None, SimpleNamespace(row=row))


def test_a_run_logs_params_epochs_final_metrics_tags_and_artifacts(tmp_path, tracked):
    from tl.core.tracking import track_run

    run = _run_dir(tmp_path, "recsys-1")
    plugin = SimpleNamespace(name="recsys")
    config = yaml.safe_load((run / "config.yaml").read_text())
    rows = [
        {"epoch": e, "train_loss": 1.0 / e, "val_ndcg@10": 0.1 * e, "lr": 1e-3} for e in (1, 2, 3)
    ]
    with track_run(plugin, config, run) as callbacks:
        _epochs(callbacks, rows)
        (run / "metrics.json").write_text(json.dumps(
            {"ndcg@10": 0.31, "onnx_parity": {"max_abs_diff": 1e-7, "agreement": None},
             "baseline": {"ndcg@10": 0.2}, "plugin": "recsys", "ok": True}))  # fmt: skip
        (run / "model.onnx").write_bytes(b"onnx")
        (run / "report.md").write_text("# report")
        (run / "training_curves.png").write_bytes(b"png")
    (found,) = tracked.search_runs([tracked.experiment])
    assert found.info.status == "FINISHED" and found.info.run_name == "recsys-1"
    assert found.data.params["lr"] == "0.003" and found.data.params["drop"] == '["a", "b"]'
    tags = found.data.tags
    assert (tags["plugin"], tags["backbone"], tags["strategy"]) == ("recsys", "sasrec", "full")
    assert tags["git_sha"] == tags["mlflow.source.git.commit"] == "abc123"
    history = tracked.get_metric_history(found.info.run_id, "val_ndcg_at_10")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (1, pytest.approx(0.1)), (2, pytest.approx(0.2)), (3, pytest.approx(0.3))]  # fmt: skip
    metrics = found.data.metrics
    assert metrics["ndcg_at_10"] == 0.31 and metrics["baseline.ndcg_at_10"] == 0.2
    assert metrics["onnx_parity.max_abs_diff"] == 1e-7 and "ok" not in metrics
    artifacts = {a.path for a in tracked.list_artifacts(found.info.run_id)}
    assert artifacts == {"config.yaml", "metrics.json", "model.onnx", "report.md",
                         "training_curves.png"}  # fmt: skip


@pytest.mark.parametrize(
    "error, status",
    [
        (RuntimeError("boom"), ("FAILED", "failed")),
        (KeyboardInterrupt(), ("KILLED", "interrupted")),
    ],
)
def test_a_failed_or_interrupted_run_ends_so_and_keeps_its_epochs(tmp_path, tracked, error, status):
    from tl.core.tracking import track_run

    run = _run_dir(tmp_path, "r")
    with pytest.raises(type(error)), track_run(SimpleNamespace(name="recsys"), {"track": "mlflow"},
                                               run) as callbacks:  # fmt: skip
        _epochs(callbacks, [{"epoch": 1, "train_loss": 0.5}])
        raise error
    (found,) = tracked.search_runs([tracked.experiment])
    assert (found.info.status, found.data.tags["tl.status"]) == status
    assert found.data.metrics["train_loss"] == 0.5 and found.data.params["lr"] == "0.003"


def test_no_tracking_touches_no_mlflow(tmp_path, monkeypatch):
    from tl.core.tracking import track_run

    monkeypatch.setitem(sys.modules, "mlflow", None)
    with track_run(SimpleNamespace(name="x"), {"track": "none"}, tmp_path) as callbacks:
        assert callbacks == []


@pytest.mark.parametrize("command", ["run", "tune", "pretrain"])
def test_without_mlflow_installed_track_is_one_line_before_any_work(tmp_path, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    code, _, stderr = invoke(command, "medical", "--data", str(tmp_path), "--track", "mlflow",
                             "--out", str(tmp_path / "runs"))  # fmt: skip
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, stderr
    assert (
        lines[0].startswith("error: --track mlflow needs MLflow")
        and 'pip install "tl[mlflow]"' in lines[0]
    )
    assert not (tmp_path / "runs").exists()
