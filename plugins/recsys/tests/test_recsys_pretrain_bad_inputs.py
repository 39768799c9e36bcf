"""`tl pretrain recsys` refuses Parquet binary ids that are not UTF-8, and list ids, like
`tl run`: one line naming the column, exit 2, no run directory — before any training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from cli_inprocess import invoke, one_line_error

TINY = ["--d-model", "8", "--layers", "1", "--heads", "1", "--max-len", "8", "--epochs", "1",
        "--device", "cpu"]  # fmt: skip
ODD = {
    "binary": (
        lambda values: [v.encode() + b"\xff" for v in values],
        "holds binary values that are not UTF-8",
    ),
    "list": (lambda values: [[value] for value in values], "holds lists"),
}


@pytest.mark.parametrize("kind", sorted(ODD))
@pytest.mark.parametrize("column", ["user_id", "item_id", "timestamp"])
def test_pretraining_refuses_odd_id_and_time_columns(kind, column, demo_dir: Path, tmp_path):
    values, message = ODD[kind]
    log = pd.read_csv(demo_dir / "market_a.csv", dtype=str)
    path = tmp_path / "source.parquet"
    log.assign(**{column: values(log[column])}).to_parquet(path)
    code, _, err = invoke("pretrain", "recsys", "--data", str(path), *TINY,
                          "--out", str(tmp_path / "runs"))  # fmt: skip
    one_line_error(code, err, f"column '{column}'", message, "source.parquet")
    assert not (tmp_path / "runs").exists()
