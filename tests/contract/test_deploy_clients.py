"""examples/deploy/: each plugin's bare-onnxruntime client gives `tl predict`'s answers.

Each client runs in a subprocess where tl, the plugins, torch, timm, peft, pandas and
scikit-learn cannot be imported (a `sys.meta_path` finder refuses them), on the contract
suite's trained run of its plugin, with only the run's model.onnx and its metadata; its
rows must equal `tl predict`'s (probabilities ≤ 1e-5, the same decisions, top-k, boxes).
The inputs hold what the graphs must handle themselves: fraud rows with other boolean
spellings, missing and unseen values; recsys histories with ids the model does not know.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from contract_harness import tl

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "examples" / "deploy"
BLOCKED = ("tl", "torch", "timm", "peft", "pandas", "sklearn")
WITHOUT_TL = f"""
import importlib.abc, runpy, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in {BLOCKED!r} or top.startswith("tl_"):
            raise ImportError(f"{{name}} is not installed here")
sys.meta_path.insert(0, Refuse())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_client(name: str, *args: object) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TL, str(CLIENTS / f"{name}.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=CLIENTS,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def tl_predict(run_dir: Path, data: Path, out: Path, *args: str) -> pd.DataFrame:
    code, _, stderr = tl("predict", run_dir, "--data", data, "--out", out, *args)
    assert code == 0, stderr[-3000:]
    return pd.read_csv(out)


def fraud_rows(data: Path, dest: Path) -> Path:
    """The table, every fourth row changed: another boolean spelling, a missing amount,
    an unseen country, a missing category and timestamp."""
    frame = pd.read_csv(data, dtype=str, keep_default_na=False)
    rows = frame.index[::4]
    frame.loc[rows, "new_device"] = ["yes", "NO", "t", "F", "True", ""] * (len(rows) // 6) + [
        "false"
    ] * (len(rows) % 6)
    frame.loc[rows[::2], "amount"] = ""
    frame.loc[rows[::3], "country"] = "ZZ"
    frame.loc[rows[1::3], "channel"] = ""
    frame.loc[rows[::5], "ts"] = ""
    out = dest / "tx_edges.csv"
    frame.to_csv(out, index=False)
    return out


def recsys_log(data: Path, dest: Path) -> Path:
    """The log plus, for every other user, an item the model has never seen."""
    frame = pd.read_csv(data)
    extra = frame.groupby("user_id").head(1).iloc[::2].copy()
    extra["item_id"] = "never-seen-item"
    extra["timestamp"] = extra["timestamp"] + 0.5
    out = dest / "log_with_unknown_items.csv"
    pd.concat([frame, extra]).to_csv(out, index=False)
    return out


def test_deploy_client_matches_tl_predict(trained, tmp_path):
    if not (CLIENTS / f"{trained.name}.py").exists():
        pytest.skip(f"no deploy client for {trained.name}")
    model = trained.run_dir / "model.onnx"
    mine, theirs = tmp_path / "client.csv", tmp_path / "tl.csv"
    if trained.name == "fraud":
        data = fraud_rows(trained.data, tmp_path)
        expected = tl_predict(trained.run_dir, data, theirs)
        run_client("fraud", model, data, mine)
        got = pd.read_csv(mine)
        assert len(got) == len(expected)
        diff = np.abs(got["fraud_probability"] - expected["fraud_probability"]).max()
        assert diff <= 1e-5
        assert (got["alert"] == expected["alert"]).all() and expected["alert"].any()
    elif trained.name == "recsys":
        data = recsys_log(trained.data, tmp_path)
        expected = tl_predict(trained.run_dir, data, theirs, "--top-k", "10")
        run_client("recsys", model, data, mine, 10)
        got = pd.read_csv(mine, dtype={"user_id": str, "item_id": str})
        expected = expected.astype({"user_id": str, "item_id": str})
        key = ["user_id", "rank", "item_id"]
        assert got[key].equals(expected[key])
        assert np.abs(got["score"] - expected["score"]).max() <= 1e-5
    elif trained.name == "medical":
        expected = tl_predict(trained.run_dir, trained.data, theirs)
        run_client("medical", model, trained.data, mine)
        got = pd.read_csv(mine)
        assert got["item"].tolist() == expected["item"].tolist()
        assert any(name.endswith(".dcm") for name in got["item"])
        assert (got["predicted"] == expected["predicted"]).all()
        columns = [c for c in expected.columns if c.startswith("p_")]
        assert np.abs(got[columns].to_numpy() - expected[columns].to_numpy()).max() <= 1e-5
    elif trained.name == "driving":
        expected = tl_predict(trained.run_dir, trained.data, theirs)
        run_client("driving", model, trained.data, mine)
        got = pd.read_csv(mine)
        assert len(got) == len(expected)
        key = ["file_name", "category_id"]
        assert got[key].equals(expected[key])
        boxes = np.array([json.loads(b) for b in got["bbox"]])
        want = np.array([json.loads(b) for b in expected["bbox"]])
        assert np.abs(boxes - want).max(initial=0) <= 0.011  # both rounded to 2 decimals
        assert np.abs((got["score"] - expected["score"]).to_numpy()).max(initial=0) <= 1e-5


def test_metadata_lists_every_graph_input(trained):
    """`metadata["inputs"]`: every graph input in order, with its column and type."""
    if trained.name == "toy":
        pytest.skip("the toy plugin describes no inputs")
    import onnx

    model = onnx.load(str(trained.run_dir / "model.onnx"), load_external_data=False)
    meta = json.loads({p.key: p.value for p in model.metadata_props}["tl"])
    assert [e["name"] for e in meta["inputs"]] == [i.name for i in model.graph.input]
    kinds = {"fraud": {"number", "string", "boolean", "datetime"}, "recsys": {"string"},
             "medical": {"image"}, "driving": {"image"}}  # fmt: skip
    assert {e["type"] for e in meta["inputs"]} == kinds[trained.name]
    assert all(e["column"] for e in meta["inputs"])


@pytest.mark.parametrize(
    "entries",
    [
        [
            {"name": "b", "column": "b", "type": "number"},
            {"name": "a", "column": "a", "type": "number"},
        ],
        [{"name": "a", "column": "a", "type": "number"}],
        [
            {"name": "a", "column": "a", "type": "float"},
            {"name": "b", "column": "b", "type": "number"},
        ],
        {"a": "number"},
    ],
)
def test_an_export_whose_inputs_metadata_is_wrong_fails(entries):
    """A plugin that describes its graph inputs wrong (order, one missing, no such type)
    gets an ExportError at export, not a model whose metadata misleads a deployer."""
    from onnx import TensorProto, helper
    from tl.core import ExportError
    from tl.core.export import check_inputs

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    good = [{"name": n, "column": n, "type": "number"} for n in ("a", "b")]
    check_inputs(helper.make_model(graph), {"inputs": good})
    with pytest.raises(ExportError, match="inputs"):
        check_inputs(helper.make_model(graph), {"inputs": entries})
