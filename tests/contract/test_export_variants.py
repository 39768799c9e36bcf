"""`tl export`: verified int8 / fp16 variants and Triton model repositories, on the contract
suite's trained medical and fraud runs (no model is trained here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from contract_harness import Trained, one_error_line, tl

pytestmark = pytest.mark.parametrize("trained", ["medical", "fraud"], indirect=True)


def _export_json(run: Path) -> dict:
    return json.loads((run / "export.json").read_text())


def _skip_unless(trained: Trained, *names: str) -> None:
    if trained.name not in names:
        pytest.skip(f"{trained.name}: covered by the other plugin")


def test_int8_keeps_the_metric_and_predicts(trained: Trained, tmp_path: Path) -> None:
    run = trained.run_dir
    code, out, err = tl("export", run, "--precision", "int8", "--calibration", "64")
    assert code == 0, err[-2000:]
    variant = run / "model.int8.onnx"
    assert out.strip().splitlines()[-1] == str(variant)
    entry = _export_json(run)["int8"]
    assert entry["verified"] is True and entry["monitored_drop"] <= 0.01, entry
    assert entry["monitor"] == trained.metrics["monitor"]
    assert {"deltas", "size_ratio", "cpu_latency_ratio", "nodes_in_float"} <= set(entry)
    assert entry["eval"]["items"] == trained.metrics["n_test"]
    assert entry["size_ratio"] == pytest.approx(
        variant.stat().st_size / (run / "model.onnx").stat().st_size, abs=1e-3
    )
    if trained.name == "medical":
        assert entry["size_ratio"] <= 0.35, entry["size_ratio"]

    from tl.core import load_onnx_model

    meta = load_onnx_model(variant, device="cpu").meta
    assert meta["precision"] == "int8" and meta["plugin"] == trained.name
    predictions = {}
    for name in ("model.onnx", "model.int8.onnx"):
        target = tmp_path / f"{name}.csv"
        code, _, err = tl("predict", run / name, "--data", trained.data, "--out", target,
                          *trained.spec.predict_args)  # fmt: skip
        assert code == 0, err[-2000:]
        predictions[name] = pd.read_csv(target)
    fp32, int8 = predictions["model.onnx"], predictions["model.int8.onnx"]
    assert list(fp32.columns) == list(int8.columns) and len(fp32) == len(int8) > 0
    # on the test items, `tl predict` differs from fp32 by what export.json reports
    splits = pd.read_csv(run / "splits.csv", dtype=str)
    test_items = set(splits.loc[splits["split"] == "test", "item"])
    key = trained.spec.position_column or trained.spec.key[0]
    items = pd.Series(range(len(fp32))).astype(str) if trained.spec.position_column else fp32[key]
    on_test = items.isin(test_items).to_numpy()
    assert on_test.sum() == trained.metrics["n_test"], key
    bound = max(entry["max_abs_diff"].values())
    for column in trained.spec.scores.values():
        diff = np.abs(fp32[column].to_numpy() - int8[column].to_numpy())[on_test].max()
        assert diff <= bound + 2e-6, (column, diff, bound)  # predict rounds to 6 decimals


def test_forced_failure_leaves_no_model(trained: Trained, monkeypatch) -> None:
    """A quantizer whose every attempt loses 0.05 of the monitored metric (as int8 models
    that collapse do): exit 2 naming the drop, every retry recorded, no model file."""
    _skip_unless(trained, "fraud")
    import tl.core.variant_eval as variant_eval

    real = variant_eval.compare

    def losing(*args, **kwargs):
        result = dict(real(*args, **kwargs))
        result["monitored_drop"] = max(0.0, float(result["monitored_drop"])) + 0.05
        return result

    monkeypatch.setattr(variant_eval, "compare", losing)
    run = trained.run_dir
    code, _, err = tl("export", run, "--precision", "int8", "--calibration", "8")
    assert code == 2, err[-2000:]
    line = one_error_line(err)
    assert "average_precision" in line and "--max-drop 0.01" in line, line
    assert not (run / "model.int8.onnx").exists()
    entry = _export_json(run)["int8"]
    assert entry["verified"] is False and entry["file"] is None
    assert len(entry["attempts"]) >= 2 and min(a["drop"] for a in entry["attempts"]) >= 0.05


def test_fp16_triton_repository(trained: Trained, tmp_path: Path) -> None:
    _skip_unless(trained, "medical")
    import onnxruntime as ort
    from google.protobuf import text_format
    from tl.core.runtime import read_metadata
    from tritonclient.grpc import model_config_pb2

    repo = tmp_path / "repo"
    code, out, err = tl("export", trained.run_dir, "--precision", "fp16", "--format", "triton",
                        "--out", repo, "--max-batch-size", "16")  # fmt: skip
    assert code == 0, err[-2000:]
    entry = _export_json(trained.run_dir)["fp16"]
    assert entry["verified"] in (True, "not verified here"), entry
    if entry["verified"] is True:
        assert entry["monitored_drop"] <= 0.01 and max(entry["max_abs_diff"].values()) <= 1e-2
    folder = Path(out.strip().splitlines()[-1])
    assert folder.parent == repo and (folder / "1" / "model.onnx").is_file()
    config = text_format.Parse(
        (folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    assert config.name == folder.name and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 16 and config.HasField("dynamic_batching")
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    session = ort.InferenceSession(
        str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    dtype = {"tensor(uint8)": "TYPE_UINT8", "tensor(float)": "TYPE_FP32"}
    for declared, actual in ((config.input, session.get_inputs()),
                             (config.output, session.get_outputs())):  # fmt: skip
        assert [t.name for t in declared] == [a.name for a in actual]
        for tensor, arg in zip(declared, actual, strict=True):
            assert model_config_pb2.DataType.Name(tensor.data_type) == dtype[arg.type]
            assert list(tensor.dims) == [d if isinstance(d, int) else -1 for d in arg.shape[1:]]
    meta = json.loads(config.parameters["tl"].string_value)
    assert meta == read_metadata(folder / "1" / "model.onnx") and meta["precision"] == "fp16"


def test_bad_inputs_are_one_line(trained: Trained, tmp_path: Path) -> None:
    _skip_unless(trained, "medical")
    bare = tmp_path / "no-splits"
    bare.mkdir()
    for name in ("config.yaml", "model.onnx", "manifest.json"):
        shutil.copy(trained.run_dir / name, bare / name)
    cases = {
        "not a run directory": ["export", tmp_path, "--precision", "int8"],
        "'int4' is not one of": ["export", trained.run_dir, "--precision", "int4"],
        "no splits.csv": ["export", bare, "--precision", "int8"],
        "needs --out": ["export", trained.run_dir, "--format", "triton"],
        "data is not there": [
            "export",
            trained.run_dir,
            "--precision",
            "int8",
            "--data",
            tmp_path / "gone",
        ],  # fmt: skip
    }
    for expected, argv in cases.items():
        code, _, err = tl(*argv)
        assert code == 2, (argv, err[-1000:])
        assert expected in one_error_line(err), err
