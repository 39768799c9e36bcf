"""`tl pretrain fraud` refuses Parquet list / struct / non-UTF-8 binary columns like `tl run`:
one line naming the column, exit 2, no run directory — before any training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from cli_inprocess import invoke, one_line_error

ODD = {
    "list": (lambda n: [[i, i + 1] for i in range(n)], "holds lists"),
    "struct": (lambda n: [{"a": i % 3} for i in range(n)], "holds structs"),
    "binary": (lambda n: [bytes([200, i % 7]) for i in range(n)], "not UTF-8"),
}
FLAGS = ["--time-column", "ts", "--drop", "transaction_id", "--drop", "card_id",
         "--d-token", "8", "--n-blocks", "1", "--epochs", "1", "--device", "cpu"]  # fmt: skip


@pytest.mark.parametrize("kind", sorted(ODD))
def test_pretraining_refuses_list_struct_and_binary_columns(kind, market_csv: Path, tmp_path):
    values, message = ODD[kind]
    table = pd.read_csv(market_csv).drop(columns="is_fraud")
    path = tmp_path / "history.parquet"
    table.assign(odd=values(len(table))).to_parquet(path)
    code, _, err = invoke("pretrain", "fraud", "--data", str(path), *FLAGS,
                          "--out", str(tmp_path / "runs"))  # fmt: skip
    one_line_error(code, err, "column 'odd'", message, "--drop odd", "history.parquet")
    assert not (tmp_path / "runs").exists()
