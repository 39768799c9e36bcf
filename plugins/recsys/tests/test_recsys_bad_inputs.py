"""Bad logs are one-line exit-2 errors naming the column (Parquet binary / list ids), and
`tl predict` says how many users have no item the model knows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from cli_inprocess import invoke, one_line_error
from tl.core import DataError
from tl_recsys.readers import read_log

TINY = ["--d-model", "8", "--layers", "1", "--heads", "1", "--max-len", "8", "--epochs", "1",
        "--batch-size", "64", "--weights", "none", "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def log(demo_dir: Path) -> pd.DataFrame:
    return pd.read_csv(demo_dir / "market_b.csv", dtype=str)


@pytest.fixture(scope="module")
def run_dir(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see conftest.one_torch_thread
    try:
        out = tmp_path_factory.mktemp("runs")
        code, stdout, err = invoke("run", "recsys", "--data", str(demo_dir / "market_b.csv"),
                                   *TINY, "--out", str(out))  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err
    return Path(stdout.strip().splitlines()[-1])


def not_utf8(values: pd.Series) -> list[bytes]:
    return [value.encode() + b"\xff" for value in values]


@pytest.mark.parametrize("column", ["user_id", "item_id"])
def test_binary_ids_that_are_not_utf8_name_the_column(column, log, tmp_path):
    path = tmp_path / "log.parquet"
    log.assign(**{column: not_utf8(log[column])}).to_parquet(path)
    with pytest.raises(
        DataError, match=f"column '{column}' holds binary values that are not UTF-8"
    ):
        read_log(path)
    code, _, err = invoke("run", "recsys", "--data", str(path), *TINY,
                          "--out", str(tmp_path / "runs"))  # fmt: skip
    one_line_error(code, err, f"column '{column}'", "UTF-8", "log.parquet")
    assert not (tmp_path / "runs").exists()


def test_utf8_binary_ids_read_as_text_and_list_ids_refused(log, demo_dir, tmp_path):
    path = tmp_path / "log.parquet"
    log.assign(user_id=log["user_id"].str.encode("utf-8")).to_parquet(path)
    expected = read_log(demo_dir / "market_b.csv").frame
    pd.testing.assert_frame_equal(read_log(path).frame, expected)
    log.assign(item_id=[[value] for value in log["item_id"]]).to_parquet(path)
    with pytest.raises(DataError, match="column 'item_id' holds lists"):
        read_log(path)


def test_predict_refuses_binary_ids(run_dir, log, tmp_path):
    path = tmp_path / "log.parquet"
    log.assign(item_id=not_utf8(log["item_id"])).to_parquet(path)
    code, _, err = invoke(
        "predict", str(run_dir), "--data", str(path), "--out", str(tmp_path / "p.csv")
    )
    one_line_error(code, err, "column 'item_id'", "not UTF-8")
    assert not (tmp_path / "p.csv").exists()


def test_predict_counts_users_without_a_known_item(run_dir, log, tmp_path):
    users = sorted(log["user_id"].unique())
    strangers = set(users[:7])
    some = log.assign(item_id=log["item_id"].where(~log["user_id"].isin(strangers), "unknown-x"))
    some.to_csv(tmp_path / "some.csv", index=False)
    code, _, err = invoke("predict", str(run_dir), "--data", str(tmp_path / "some.csv"),
                          "--out", str(tmp_path / "p.csv"))  # fmt: skip
    assert code == 0, err
    assert f"7 of {len(users):,} users have no item known to the model" in err
    rows = pd.read_csv(tmp_path / "p.csv", dtype={"user_id": str})
    assert set(rows.loc[rows["history_length"] == 0, "user_id"]) == strangers
    log.assign(item_id="unknown-" + log["item_id"]).to_csv(tmp_path / "all.csv", index=False)
    code, _, err = invoke("predict", str(run_dir), "--data", str(tmp_path / "all.csv"),
                          "--out", str(tmp_path / "p.csv"))  # fmt: skip
    assert code == 0, err
    assert f"{len(users):,} of {len(users):,} users have no item known to the model" in err
