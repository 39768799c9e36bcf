"""The core's torch-free readers: tables (one error policy) and tl weights metadata."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tl.core import (
    DataError,
    WeightsError,
    iter_table,
    read_table,
    read_weights_metadata,
    require_column,
)


def test_csv_parquet_and_chunks_agree(tmp_path):
    frame = pd.DataFrame({"id": ["007", "8"], "x": [1.5, 2.0]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    assert read_table(tmp_path / "t.csv", as_text=True)["id"].tolist() == ["007", "8"]
    assert read_table(tmp_path / "t.parquet")["x"].tolist() == [1.5, 2.0]
    chunks = list(iter_table(tmp_path / "t.csv", 1))
    assert [c.index[0] for c in chunks] == [0, 1]


@pytest.mark.parametrize(
    "content, expected",
    [(b"", "the file is empty"), (b"a,b\n", "has no rows"), (b"a,a\n1,2\n", "duplicated column"),
     (b"a,b\n\xff\xfe,1\n", "not UTF-8")],
)  # fmt: skip
def test_bad_tables_are_one_line_errors(content, expected, tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected) as err:
        read_table(path)
    assert "\n" not in err.value.line()
    with pytest.raises(DataError, match=expected):
        list(iter_table(path, 10))


def test_missing_folder_and_suffix(tmp_path):
    for path, expected in ((tmp_path / "no.csv", "not found"), (tmp_path, "a folder"),
                           (tmp_path / "x.xlsx", "unsupported")):  # fmt: skip
        if path.suffix == ".xlsx":
            path.write_text("x")
        with pytest.raises(DataError, match=expected):
            read_table(path)


def test_require_column_hints_and_lists_all_columns():
    frame = pd.DataFrame({f"c{i}": [1] for i in range(25)} | {"amount": [1]})
    with pytest.raises(DataError, match="did you mean 'amount'") as err:
        require_column(frame, "amout", "--target")
    assert "26 in all" in err.value.line()


def test_weights_metadata(tmp_path):
    from safetensors.numpy import save_file

    block = {"plugin": "fraud", "weights_meta": {"schema": {"a": 1}}}
    save_file({"w": np.zeros(2, np.float32)}, str(tmp_path / "w.safetensors"),
              metadata={"tl": json.dumps(block)})  # fmt: skip
    assert read_weights_metadata(tmp_path / "w.safetensors") == block
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="corrupt"):
        read_weights_metadata(tmp_path / "bad.safetensors")
