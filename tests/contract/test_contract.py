"""One contract, every plugin: the regressions of protocol v2 as tests.

Each case reads the plugin's session run (`trained`: a transfer run from an earlier run's
weights with `--compare-scratch`) or makes a failing one, on tiny generated data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from contract_harness import installed, last_line, one_error_line, tl
from specs import SPECS

TIMING = ("seconds", "latency", "_ms", "throughput")


def _read_meta(run_dir: Path) -> dict[str, Any]:
    from tl.core import load_onnx_model

    return load_onnx_model(run_dir, device="cpu").meta


def _fmt(value: float) -> str:
    from tl.core.report import _fmt as report_format

    return report_format(value)


def _without_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items()
                if not any(t in k for t in TIMING)}  # fmt: skip
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def test_compare_scratch_leaves_the_main_models_results_alone(trained):
    metrics = trained.metrics
    assert "scratch" in metrics and "transfer_gain" in metrics
    meta = _read_meta(trained.run_dir)
    if "threshold" not in metrics:
        assert "threshold" not in metrics["scratch"]
        return
    assert meta["threshold"] == pytest.approx(metrics["threshold"], abs=1e-12)
    predictions = pd.read_csv(trained.run_dir / "test_predictions.csv")
    expected = trained.spec.decide(predictions, metrics["threshold"])
    column = trained.spec.decision_column
    assert (predictions[column].to_numpy() == expected.to_numpy()).all(), (
        f"test_predictions.csv {column} do not follow the run's threshold "
        f"{metrics['threshold']} (scratch: {metrics['scratch']['threshold']})"
    )


def test_report_figures_are_the_metrics_json_figures(trained):
    metrics = trained.metrics
    report = (trained.run_dir / "report.md").read_text(encoding="utf-8")
    monitor = metrics["monitor"]
    assert isinstance(metrics[monitor], float)
    assert _fmt(metrics[monitor]) in report
    row = (f"| {monitor} | {_fmt(metrics[monitor])} | {_fmt(metrics['scratch'][monitor])} | "
           f"{_fmt(metrics['transfer_gain'][monitor])} |")  # fmt: skip
    assert row in report, f"{row!r} not in the report's transfer table"


def test_the_run_config_reproduces_the_run(trained):
    code, stdout, stderr = tl("run", trained.name, "--config", trained.run_dir / "config.yaml",
                              "--out", trained.root / "again")  # fmt: skip
    assert code == 0, stderr[-3000:]
    again = json.loads((Path(last_line(stdout)) / "metrics.json").read_text())
    assert _without_timing(again) == _without_timing(trained.metrics)
    first = yaml.safe_load((trained.run_dir / "config.yaml").read_text())
    second = yaml.safe_load((Path(last_line(stdout)) / "config.yaml").read_text())
    assert {k: v for k, v in first.items() if k != "out"} == {
        k: v for k, v in second.items() if k != "out"
    }


@pytest.mark.parametrize("name", installed())
def test_an_unknown_config_key_and_a_flag_typo_are_one_line(name, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"data": str(tmp_path), "learning_rate": 0.01}))
    out = tmp_path / "runs"
    code, _, stderr = tl("run", name, "--config", config, "--out", out)
    assert code == 2
    line = one_error_line(stderr)
    assert "unknown key 'learning_rate'" in line and str(config) in line
    code, _, stderr = tl("run", name, "--data", tmp_path, "--learning-rate", "0.01", "--out", out)
    assert code == 2 and "--learning-rate" in one_error_line(stderr)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("name", installed())
def test_a_run_that_fails_leaves_no_stub_or_is_marked_failed(name, tmp_path):
    out = tmp_path / "runs"
    code, _, stderr = tl("run", name, "--data", tmp_path / "missing", "--out", out,
                         *SPECS[name].common)  # fmt: skip
    assert code == 2 and one_error_line(stderr)
    assert not out.exists() or not any(out.iterdir()), "a run that could not load left a folder"


def test_a_run_that_fails_after_loading_is_marked_and_predict_says_so(trained):
    out = trained.root / "failing"
    code, _, stderr = tl("run", trained.name, "--data", trained.data, *trained.args,
                         *trained.spec.common, "--backbone", "no_such_model_xyz", "--out", out)  # fmt: skip
    assert code == 2, stderr[-2000:]
    error = one_error_line(stderr)
    (run_dir,) = list(out.iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"] in error
    code, _, stderr = tl("predict", run_dir, "--data", trained.data)
    assert code == 2 and "failed" in one_error_line(stderr)


def test_resume_of_another_plugins_run_names_the_mismatch(trained):
    other = "toy" if trained.name != "toy" else next(n for n in installed() if n != "toy")
    code, _, stderr = tl("run", other, "--resume", trained.run_dir)
    assert code == 2
    line = one_error_line(stderr)
    assert f"this is a {trained.name} run" in line and f"tl run {trained.name}" in line


def test_predict_equals_the_runs_test_predictions(trained):
    spec = trained.spec
    out = trained.root / "predict.csv"
    data = spec.predict_data(trained.data, trained.root) if spec.predict_data else trained.data
    code, _, stderr = tl("predict", trained.run_dir, "--data", data, *spec.predict_args,
                         "--out", out)  # fmt: skip
    assert code == 0, stderr[-3000:]
    predicted = pd.read_csv(out)
    if spec.position_column:
        predicted[spec.position_column] = range(len(predicted))
    if spec.reshape:
        predicted = spec.reshape(predicted)
    expected = pd.read_csv(trained.run_dir / "test_predictions.csv")
    if spec.expected:
        expected = spec.expected(expected)
    assert len(expected) == trained.metrics["n_test"] > 0
    joined = expected.merge(predicted, on=spec.key, how="left", suffixes=("", "_predict"),
                            indicator=True)  # fmt: skip
    missing = joined["_merge"] != "both"
    if spec.absent is not None:
        for column, value in spec.absent.items():
            name = f"{column}_predict"
            joined[name] = joined[name].astype(object)
            for index in joined.index[missing]:
                joined.at[index, name] = value
        missing &= joined["n_detections"] != 0
    assert not missing.any(), "test items missing from tl predict's output"
    for ours, theirs in {**spec.scores, **spec.same}.items():
        left = joined[ours]
        right = joined[f"{theirs}_predict" if theirs in expected.columns else theirs]
        if ours in spec.scores:
            diff = (left.astype(float) - right.astype(float)).abs().max()
            assert diff <= 1e-5, f"{ours}: max abs diff {diff}"
        else:
            same = [_same(a, b) for a, b in zip(left, right, strict=True)]
            assert all(same), f"{ours} differs: {left[~pd.Series(same)].head(3).tolist()}"


def _same(a: Any, b: Any) -> bool:
    """Equal values; lists of scores equal within the rounding of the two outputs."""
    if isinstance(a, list) or isinstance(b, list):
        return len(a) == len(b) and all(abs(x - y) <= 2e-3 for x, y in zip(a, b, strict=True))
    return str(a) == str(b)


def test_predict_skip_bad_counts_the_bad_item(trained):
    spec = trained.spec
    if spec.corrupt is None:
        pytest.skip(f"{trained.name} reads no per-item files")
    bad = spec.corrupt(trained.data, trained.root / "damaged")
    out = trained.root / "damaged.csv"
    code, _, stderr = tl("predict", trained.run_dir, "--data", bad, *spec.predict_args,
                         "--out", out)  # fmt: skip
    assert code == 2 and not out.exists()
    assert one_error_line(stderr)
    code, _, stderr = tl("predict", trained.run_dir, "--data", bad, *spec.predict_args,
                         "--skip-bad", "--out", out)  # fmt: skip
    assert code == 0, stderr[-3000:]
    frame = pd.read_csv(out)
    errors = frame["error"].dropna()
    assert len(errors) == 1, frame["error"].value_counts(dropna=False)
    assert "skipped 1 " in stderr


def test_evaluate_on_the_training_data_warns_with_counts(trained):
    metrics = trained.metrics
    code, stdout, stderr = tl("evaluate", trained.run_dir, "--data", trained.data,
                              *trained.spec.predict_args)  # fmt: skip
    assert code == 0, stderr[-2000:]
    overlap = json.loads(stdout)["overlap"]
    assert 0 < overlap["train"] <= metrics["n_train"] and overlap["evaluated"] > 0
    assert 0 <= overlap["val"] <= metrics["n_val"]
    (line,) = [ln for ln in stderr.splitlines() if "matched by content" in ln]
    assert f"{overlap['train']} in its train split" in line and "not a held-out" in line
