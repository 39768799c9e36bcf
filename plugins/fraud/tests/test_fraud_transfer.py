"""Weights move between tables by column name; SSL pretraining beats no pretraining."""

import harness
import numpy as np
import torch
from tl_fraud.demo import HISTORY, NEW_MARKET, generate
from tl_fraud.model import Architecture, FraudModel
from tl_fraud.plugin import FraudPlugin
from tl_fraud.schema import CategoricalFeature, NumericFeature, TableSchema
from tl_fraud.transfer import adapt_state_dict

ARCH = {"d_token": 32, "n_blocks": 1, "n_heads": 4}
IDS = ("transaction_id", "card_id")


def test_adapt_maps_shared_columns_and_categories_by_name():
    source = TableSchema(
        numeric=[NumericFeature("amount", "amount"), NumericFeature("old", "old")],
        categorical=[CategoricalFeature("channel", ["atm", "pos"])],
    )
    target = TableSchema(
        numeric=[NumericFeature("new", "new", center=5.0), NumericFeature("amount", "amount")],
        categorical=[CategoricalFeature("channel", ["pos", "wallet"])],
    )
    arch = Architecture(d_token=8, n_blocks=1, n_heads=2)
    src_state = FraudModel(source, arch).state_dict()
    own = FraudModel(target, arch).state_dict()
    state, summary = adapt_state_dict(src_state, source, target, own)
    key = "backbone.tokenizer."
    assert torch.equal(state[key + "num_weight"][1], src_state[key + "num_weight"][0])
    assert torch.equal(state[key + "num_weight"][0], own[key + "num_weight"][0])
    emb, src_emb = state[key + "cat_embedding.weight"], src_state[key + "cat_embedding.weight"]
    assert torch.equal(emb[0], src_emb[0]) and torch.equal(emb[1], src_emb[2])  # unknown, "pos"
    assert torch.equal(emb[2], own[key + "cat_embedding.weight"][2])  # "wallet" is new
    assert key + "num_center" not in state  # each table keeps its own scaling
    assert summary == {
        "shared_columns": ["amount", "channel"],
        "new_columns": ["new"],
        "dropped_columns": ["old"],
        "shared_categories": 1,
    }


def test_ssl_pretraining_beats_no_pretraining_with_few_labels(tmp_path):
    """20k unlabelled history rows → mask-reconstruction pretraining → 1,000 labelled rows
    of the shifted market (30 fraud) → average precision on 3,000 held-out rows."""
    plugin = FraudPlugin()
    history = generate(HISTORY, 20_000, np.random.default_rng(0), "2024-01-01", 90, 0.01)
    history.drop(columns=["is_fraud"]).to_parquet(tmp_path / "history.parquet")
    weights = harness.pretrain(
        plugin,
        harness.pretrain_config(
            tmp_path / "history.parquet", drop=IDS, seed=0, ssl="mask", epochs=6,
            batch_size=256, lr=2e-3, **ARCH,
        ),
        tmp_path / "pretrain",
    )  # fmt: skip
    gains = []
    for seed in (0, 1):
        market = generate(
            NEW_MARKET, 5000, np.random.default_rng(100 + seed), "2024-07-01", 30, 0.03
        )
        market.to_csv(tmp_path / "market.csv", index=False)
        ap = {}
        for name, source in (("pretrained", str(weights.parent)), ("scratch", "none")):
            options = harness.run_config(
                plugin, tmp_path / "market.csv", target="is_fraud", drop=IDS, seed=seed,
                val_fraction=0.2, test_fraction=0.6, epochs=10, weights=source, **ARCH,
            )  # fmt: skip
            data = plugin.load(tmp_path / "market.csv", options)
            model, fitted, _ = harness.finetune(plugin, data, options, tmp_path / f"{name}{seed}")
            ap[name] = fitted.metrics["average_precision"]
            if name == "pretrained":
                assert model.transfer["new_columns"] == ["installments"]
                assert model.transfer["dropped_columns"] == ["device_os"]
                assert fitted.metrics["transfer"] == model.transfer
            else:
                assert model.transfer is None and "transfer" not in fitted.metrics
        gains.append(ap["pretrained"] - ap["scratch"])
    assert np.mean(gains) > 0.05, gains
    assert min(gains) > 0, gains
