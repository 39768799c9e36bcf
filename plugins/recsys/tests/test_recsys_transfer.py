"""Market A → market B: item rows follow their ids, and pretraining on A beats B alone."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from tl.core import BackboneSpec
from tl.core.backbones import load_tl_weights
from tl.core.checkpoints import save_backbone
from tl_recsys.dataset import popularity_baseline
from tl_recsys.transfer import adapt_state_dict, find_meta, weights_metadata

TINY = {"d_model": 32, "layers": 1, "heads": 1, "max_len": 20}


def test_adapt_moves_shared_rows_and_keeps_fresh_init_for_new_items() -> None:
    source = ["a", "b", "c"]
    target = ["b", "d", "a"]
    state = {
        "backbone.item_embedding.weight": torch.tensor([[0.0], [1.0], [2.0], [3.0]]),
        "head.item_bias": torch.tensor([0.0, 10.0, 20.0, 30.0]),
        "backbone.position_embedding.weight": torch.ones(5, 1),
    }
    own = {
        "backbone.item_embedding.weight": torch.full((4, 1), -1.0),
        "head.item_bias": torch.full((4,), -1.0),
        "backbone.position_embedding.weight": torch.zeros(8, 1),
    }
    meta = {"weights_meta": weights_metadata(source, {"d_model": 1})}
    assert find_meta(meta)["items"] == source
    out, summary = adapt_state_dict(state, meta, own, target)
    assert out["backbone.item_embedding.weight"].flatten().tolist() == [-1.0, 2.0, -1.0, 1.0]
    assert out["head.item_bias"].tolist() == [-1.0, 20.0, -1.0, 10.0]
    assert out["backbone.position_embedding.weight"].sum() == 5
    assert summary == {"items_source": 3, "items_target": 3, "items_shared": 2, "items_new": 1}
    unchanged, summary = adapt_state_dict(state, {"other": 1}, own, target)
    assert unchanged is state and summary["items_shared"] is None


@pytest.mark.parametrize("first_k", [None, 5])
def test_pretraining_on_market_a_beats_market_b_alone(
    plugin, demo_dir: Path, tmp_path: Path, fit_model, config, first_k
) -> None:
    started = time.time()
    torch.manual_seed(0)
    market_a = plugin.load(demo_dir / "market_a.csv", config(**TINY))
    source = plugin.build_model(BackboneSpec("sasrec"), market_a, config(**TINY))
    fit_model(plugin, source, market_a, epochs=5, batch_size=128)
    weights = save_backbone(
        source, tmp_path / "backbone.safetensors",
        {"plugin": "recsys", "weights_meta": plugin.weights_metadata(source, market_a)},
    )  # fmt: skip

    options = config(**TINY, first_k=first_k)
    market_b = plugin.load(demo_dir / "market_b.csv", options)
    torch.manual_seed(1)
    scratch = plugin.build_model(BackboneSpec("sasrec"), market_b, options)
    scratch_metrics = fit_model(plugin, scratch, market_b, epochs=8)

    torch.manual_seed(1)
    spec = BackboneSpec("sasrec", weights=str(weights))
    model = plugin.build_model(spec, market_b, config())  # architecture from the weights
    assert model.config.d_model == TINY["d_model"]
    loaded = load_tl_weights(
        model, weights, adapt=lambda s, m: plugin.adapt_weights(s, m, model, market_b)
    )
    assert loaded["skipped"] == []
    assert model.transfer_summary["items_shared"] > 100
    transfer_metrics = fit_model(plugin, model, market_b, epochs=8)

    gain = transfer_metrics["ndcg@10"] - scratch_metrics["ndcg@10"]
    assert gain > 0.08, (transfer_metrics["ndcg@10"], scratch_metrics["ndcg@10"])
    assert transfer_metrics["ndcg@10"] > 3 * popularity_baseline(market_b)["ndcg@10"]
    assert time.time() - started < 60
