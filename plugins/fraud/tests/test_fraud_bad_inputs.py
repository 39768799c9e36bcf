"""Bad input is a one-line exit-2 error naming what is wrong, at training and at scoring time:
Parquet list / struct / binary columns, and `tl evaluate` on data without the label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_inprocess import invoke, one_line_error
from tl.core import DataError, read_table
from tl_fraud.prepare import prepare
from tl_fraud.schema import CategoricalFeature, TableSchema

FLAGS = ["--target", "is_fraud", "--time-column", "ts", "--drop", "transaction_id",
         "--drop", "card_id"]  # fmt: skip
TINY = ["--d-token", "8", "--n-blocks", "1", "--epochs", "1", "--batch-size", "256",
        "--weights", "none", "--device", "cpu"]  # fmt: skip
ODD = {
    "list": (lambda n: [[i, i + 1] for i in range(n)], "holds lists"),
    "struct": (lambda n: [{"a": i % 3} for i in range(n)], "holds structs"),
    "binary": (lambda n: [bytes([200, i % 7]) for i in range(n)], "not UTF-8"),
}


@pytest.fixture(scope="module")
def table(market_csv: Path) -> pd.DataFrame:
    return pd.read_csv(market_csv)


@pytest.fixture(scope="module")
def run_dir(market_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see conftest.one_torch_thread
    try:
        out = tmp_path_factory.mktemp("runs")
        code, stdout, err = invoke("run", "fraud", "--data", str(market_csv), *FLAGS, *TINY,
                                   "--out", str(out))  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err
    return Path(stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", sorted(ODD))
def test_training_refuses_list_struct_and_binary_columns(kind, table, tmp_path):
    values, message = ODD[kind]
    path = tmp_path / "t.parquet"
    table.assign(odd=values(len(table))).to_parquet(path)
    code, _, err = invoke("run", "fraud", "--data", str(path), *FLAGS, *TINY,
                          "--out", str(tmp_path / "runs"))  # fmt: skip
    one_line_error(code, err, "column 'odd'", message, "--drop odd")
    assert not (tmp_path / "runs").exists()
    prepared = prepare(path, {"target": "is_fraud", "drop": ["transaction_id", "card_id", "odd"]})
    assert "odd" not in prepared.schema.source_columns


def test_utf8_binary_is_read_as_text(table, market_csv, tmp_path):
    path = tmp_path / "t.parquet"
    table.assign(country=table["country"].str.encode("utf-8")).to_parquet(path)
    options = {"target": "is_fraud", "drop": ["transaction_id", "card_id"]}
    assert prepare(path, options).schema == prepare(market_csv, options).schema


def test_reader_checks_only_the_named_columns_and_categoricals(tmp_path):
    path = tmp_path / "t.parquet"
    frame = pd.DataFrame({"a": [[1], [2]], "b": pd.Categorical([b"x", b"\xff"]), "c": [1, 2]})
    frame.to_parquet(path)
    assert read_table(path, plain=["c"])["c"].tolist() == [1, 2]
    with pytest.raises(DataError, match="column 'a' holds lists"):
        read_table(path, plain=lambda name: name != "c")
    with pytest.raises(DataError, match="column 'b' holds binary values that are not UTF-8"):
        read_table(path, plain=["b", "c"])


@pytest.mark.parametrize("kind", sorted(ODD))
def test_predict_and_evaluate_refuse_odd_model_columns(kind, run_dir, table, tmp_path):
    values, message = ODD[kind]
    odd = table.assign(merchant_category=values(len(table)))
    odd.to_parquet(tmp_path / "labelled.parquet")
    odd.drop(columns="is_fraud").to_parquet(tmp_path / "new.parquet")
    code, _, err = invoke("predict", str(run_dir), "--data", str(tmp_path / "new.parquet"),
                          "--out", str(tmp_path / "p.csv"))  # fmt: skip
    one_line_error(code, err, "column 'merchant_category'", message)
    assert not (tmp_path / "p.csv").exists()
    code, _, err = invoke("evaluate", str(run_dir), "--data", str(tmp_path / "labelled.parquet"))
    one_line_error(code, err, "column 'merchant_category'", message)


def test_columns_the_model_does_not_use_may_be_anything(run_dir, table, tmp_path):
    path = tmp_path / "new.parquet"
    labelled = table.assign(tags=ODD["list"][0](len(table)), blob=ODD["binary"][0](len(table)))
    labelled.drop(columns="is_fraud").to_parquet(path)
    code, _, err = invoke(
        "predict", str(run_dir), "--data", str(path), "--out", str(tmp_path / "p.csv")
    )
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(table)
    labelled.to_parquet(path)
    code, out, err = invoke("evaluate", str(run_dir), "--data", str(path))
    assert code == 0, err
    assert '"average_precision"' in out


def test_evaluate_without_the_label_names_it_and_lists_every_column(run_dir, table, tmp_path):
    wide = table.drop(columns="is_fraud")
    wide = wide.assign(**{f"extra_{i}": np.arange(len(wide)) for i in range(10)})
    wide.to_csv(tmp_path / "new.csv", index=False)
    code, _, err = invoke("evaluate", str(run_dir), "--data", str(tmp_path / "new.csv"))
    one_line_error(code, err, "label column 'is_fraud' is not in the evaluation data",
                   "--target", f"({wide.shape[1]} in all)", "new.csv")  # fmt: skip
    code, _, err = invoke("evaluate", str(run_dir), "--data", str(tmp_path / "new.csv"),
                          "--target", "label")  # fmt: skip
    one_line_error(code, err, "label column 'label' is not in the evaluation data")


def test_missing_model_columns_are_all_counted():
    schema = TableSchema(categorical=[CategoricalFeature(f"c{i}", ["a"]) for i in range(25)])
    with pytest.raises(DataError, match=r"lacks 25 column\(s\).*c19 … \(25 in all\)"):
        schema.encode(pd.DataFrame({"x": [1]}))
