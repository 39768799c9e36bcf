"""Readers, column types, splits, metrics and bad input — no training."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tl.core import ConfigError, DataError
from tl.core.config import resolve_config
from tl_fraud.metrics import ThresholdRule, alerts_for_recall, choose_threshold, fraud_metrics
from tl_fraud.plugin import FraudPlugin
from tl_fraud.prepare import prepare
from tl_fraud.readers import parse_target
from tl_fraud.schema import fit_schema, infer_types

OPTIONS = {"target": "is_fraud", "drop": ("transaction_id", "card_id"), "seed": 0}


def load(path: Path, **options):
    """`FraudPlugin.load` with the options `tl run fraud --data path` resolves."""
    plugin = FraudPlugin()
    return plugin.load(path, resolve_config(plugin, {"data": str(path), **OPTIONS, **options}))


def test_target_parsing_numbers_booleans_and_strings():
    labels, positive = parse_target(pd.Series([0, 1, None, 1.0]))
    assert labels.tolist() == [0, 1, -1, 1] and positive == "1"
    labels, _ = parse_target(pd.Series([True, False]))
    assert labels.tolist() == [1, 0]
    labels, positive = parse_target(pd.Series(["legit", "chargeback", "legit"]), "chargeback")
    assert labels.tolist() == [0, 1, 0] and positive == "chargeback"
    with pytest.raises(ConfigError, match="--positive"):
        parse_target(pd.Series(["legit", "chargeback"]))
    with pytest.raises(DataError, match="one class"):
        parse_target(pd.Series([0, 0, 0]))


def test_column_types_are_inferred():
    frame = pd.DataFrame(
        {
            "amount": [1.5, 20.0, 3.2, 400.0] * 30,
            "channel": ["pos", "web", "pos", "atm"] * 30,
            "installments": [1, 2, 3, 1] * 30,
            "flag": ["yes", "no", "no", "yes"] * 30,
            "when": [
                "2024-01-01 10:00:00",
                "2024-01-02 23:30:00",
                "2024-01-03 01:00:00",
                "2024-01-03 05:00:00",
            ]
            * 30,
            "empty": [np.nan] * 120,
            "tx_id": [f"t{i}" for i in range(120)],
        }
    )
    types, excluded = infer_types(frame, exclude=set())
    assert types == {
        "amount": "numeric",
        "channel": "categorical",
        "installments": "categorical",
        "flag": "boolean",
        "when": "datetime",
    }
    assert excluded["empty"] == "all values missing" and "identifier" in excluded["tx_id"]
    schema = fit_schema(frame, types)
    assert schema.numeric_names == ["amount", "flag", "when.hour", "when.weekday"]
    assert schema.categorical[1].vocab == ["1", "2", "3"]
    numeric, categorical, unseen = schema.encode(
        pd.DataFrame({**{c: frame[c].head(2) for c in frame}, "channel": ["pos", "drone"]})
    )
    assert numeric[1, 2] == pytest.approx(23.5) and categorical[:, 0].tolist() == [2, 0]
    assert unseen == {"channel": 1}


def test_string_in_numeric_column_is_an_error():
    frame = pd.DataFrame({"amount": [1.0, 2.0, 3.0, 4.0] * 5})
    schema = fit_schema(frame, {"amount": "numeric"})
    with pytest.raises(DataError, match="numeric but holds text"):
        schema.encode(pd.DataFrame({"amount": ["1.0", "ten"]}), "today.csv")


def test_out_of_time_split_never_mixes_time(market_csv: Path):
    prepared = prepare(market_csv, {**OPTIONS, "time_column": "ts"})
    times = pd.to_datetime(pd.read_csv(market_csv)["ts"])
    last_train = times[prepared.split == "train"].max()
    assert last_train <= times[prepared.split == "val"].min()
    assert times[prepared.split == "val"].max() <= times[prepared.split == "test"].min()
    assert "ts.hour" in prepared.schema.numeric_names


def test_group_split_keeps_each_card_in_one_split(market_csv: Path):
    prepared = prepare(
        market_csv, {**OPTIONS, "group_column": "card_id", "drop": ("transaction_id",)}
    )
    cards = pd.read_csv(market_csv)["card_id"]
    assert (pd.Series(prepared.split).groupby(cards).nunique() == 1).all()
    assert "card_id" in prepared.schema.id_columns


def test_metrics_against_hand_computed_values():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    targets = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    m = fraud_metrics(scores, targets, threshold=0.65)
    assert m["average_precision"] == pytest.approx((1 + 2 / 3 + 3 / 10) / 3)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["alerts_for_90pct_recall"] == 10 and alerts_for_recall(scores, targets, 0.6) == 3
    assert m["recall_at_1pct_fpr"] == pytest.approx(1 / 3)
    assert choose_threshold(scores, targets, ThresholdRule(target_recall=0.6)) == pytest.approx(0.7)
    assert choose_threshold(
        scores, targets, ThresholdRule(cost_fp=1, cost_fn=100)
    ) == pytest.approx(0.05)


@pytest.mark.parametrize(
    "frame, options, error, message",
    [
        (None, {"target": "label"}, DataError, "is not in the data"),
        ("one_class", {}, DataError, "one class"),
        ("empty", {}, DataError, "empty"),
        ("bad_time", {"time_column": "ts"}, DataError, "does not parse"),
        (None, {"target": None}, ConfigError, "no target"),
    ],
)
def test_bad_input_fails_cleanly(tmp_path, market_csv, frame, options, error, message):
    path = market_csv
    table = pd.read_csv(market_csv)
    if frame == "one_class":
        path = tmp_path / "x.csv"
        table.assign(is_fraud=0).to_csv(path, index=False)
    elif frame == "empty":
        path = tmp_path / "x.csv"
        path.write_text("")
    elif frame == "bad_time":
        path = tmp_path / "x.parquet"
        table.assign(ts="not a date").to_parquet(path)
    with pytest.raises(error, match=message):
        load(path, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in tmp_path.iterdir() if p.suffix in (".csv", ".parquet")
    )


def test_all_nan_column_is_a_counted_warning(tmp_path, market_csv):
    path = tmp_path / "x.csv"
    pd.read_csv(market_csv).assign(broken=np.nan).to_csv(path, index=False)
    data = load(path)
    assert data.info["warnings"] == {"column 'broken' not used: all values missing": 1}
    assert "broken" not in data.prepared.schema.source_columns
