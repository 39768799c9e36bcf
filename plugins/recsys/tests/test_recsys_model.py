"""SASRec: padding invariance, causality, training reduces the loss, both losses, stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tl.core import BackboneSpec, ConfigError
from tl_recsys.dataset import popularity_baseline

TINY = {"d_model": 32, "layers": 2, "heads": 2, "max_len": 12}


@pytest.fixture(scope="module")
def market_b(plugin, demo_dir: Path, config):
    return plugin.load(demo_dir / "market_b.csv", config(max_len=12))


def build(plugin, data, **extra):
    from tl.core.config import resolve_config

    torch.manual_seed(0)
    options = resolve_config(plugin, {"data": "log.csv", **TINY, **extra})
    return plugin.build_model(BackboneSpec("sasrec"), data, options).eval()


def test_left_padding_and_causality(plugin, market_b) -> None:
    model = build(plugin, market_b)
    history = torch.tensor([[5, 9, 3, 7]])
    padded = torch.tensor([[0, 0, 0, 5, 9, 3, 7]])
    with torch.no_grad():
        torch.testing.assert_close(model(history), model(padded), atol=1e-5, rtol=1e-5)
        hidden = model.backbone(history)
        changed = model.backbone(torch.tensor([[5, 9, 3, 8]]))
    torch.testing.assert_close(hidden[:, :3], changed[:, :3])
    assert not torch.allclose(hidden[:, 3], changed[:, 3])


def test_longer_history_than_max_len_uses_the_latest_items(plugin, market_b) -> None:
    model = build(plugin, market_b)
    recent = torch.arange(1, 13).unsqueeze(0)
    long = torch.cat([torch.tensor([[40, 41, 42]]), recent], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(long), model(recent))


def test_backbone_and_head_and_stages(plugin, market_b, config) -> None:
    model = build(plugin, market_b)
    names = [n for n, _ in model.backbone.named_children()]
    assert names == ["item_embedding", "position_embedding", "block0", "block1", "norm"]
    assert model.head.item_bias.shape[0] == market_b.n_items + 1
    assert model.config.dropout == 0.2  # the plugin's default
    with pytest.raises(ConfigError, match="sasrec"):
        plugin.build_model(BackboneSpec("resnet18"), market_b, config(**TINY))


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_training_reduces_loss_and_beats_popularity(
    plugin, market_b, fit_model, evaluate_model, loss
) -> None:
    model = build(plugin, market_b, loss=loss, negatives=64)
    batch = market_b.collate([market_b.train[i] for i in range(64)])
    model.train()
    torch.manual_seed(0)
    before = plugin.training_step(model, batch).item()
    metrics = fit_model(plugin, model, market_b, epochs=15)
    model.train()
    torch.manual_seed(0)
    assert plugin.training_step(model, batch).item() < before - 0.5
    assert metrics["ndcg@10"] > 2 * popularity_baseline(market_b, "test")["ndcg@10"]


def test_train_windows_cover_every_training_transition_once(market_b) -> None:
    seqs = market_b.seqs
    covered = sum(len(w) - 1 for w in (market_b.train[i] for i in range(len(market_b.train))))
    assert covered == int(np.maximum(seqs.lengths - 3, 0).sum())
    assert max(len(market_b.train[i]) for i in range(len(market_b.train))) <= 13
