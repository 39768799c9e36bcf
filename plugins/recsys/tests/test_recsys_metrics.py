"""Full-ranking metrics: known values, sklearn cross-check, popularity and model ranks vs brute force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score
from tl_recsys.dataset import popularity_baseline
from tl_recsys.ranking import item_counts, popularity_ranks, rank_metrics, ranks_from_topk
from tl_recsys.sequences import LeaveLastOut, Sequences
from tl_recsys.training import collate, rank_step


def test_rank_metrics_known_values() -> None:
    m = rank_metrics(np.array([0, 1, 9, 10, np.inf]))
    assert m["hit@10"] == pytest.approx(3 / 5)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 10) / 5)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 5)


def test_ndcg_matches_sklearn_on_random_scores() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(40, 60))
    targets = rng.integers(0, 60, 40)
    truth = np.zeros_like(scores)
    truth[np.arange(40), targets] = 1
    ranks = (scores > scores[np.arange(40), targets][:, None]).sum(1)
    assert rank_metrics(ranks)["ndcg@10"] == pytest.approx(ndcg_score(truth, scores, k=10))
    topk = np.argsort(-scores, axis=1)[:, :10]
    np.testing.assert_array_equal(
        ranks_from_topk(topk, targets), np.where(ranks < 10, ranks, np.inf)
    )


def _random_sequences(rng: np.random.Generator, n_users: int, n_items: int) -> Sequences:
    lengths = rng.integers(3, 12, n_users)
    items = rng.integers(1, n_items + 1, lengths.sum())
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    users = np.array([f"u{i}" for i in range(n_users)])
    return Sequences(users, offsets, items, np.arange(len(items), dtype=float))


def test_popularity_ranks_equal_brute_force_full_ranking() -> None:
    rng = np.random.default_rng(1)
    seqs = _random_sequences(rng, 60, 25)
    lol = LeaveLastOut(seqs)
    counts = item_counts(lol, 25)
    ranks = popularity_ranks(lol, "test", counts)
    score = counts - np.arange(26) * 1e-6  # ties broken by index, like the fast path
    for u, row in enumerate(lol.target_rows("test")):
        seen = set(seqs.items[seqs.offsets[u] : row].tolist())
        target = seqs.items[row]
        if target in seen:
            assert np.isinf(ranks[u])
            continue
        others = [i for i in range(1, 26) if i not in seen and i != target]
        assert ranks[u] == sum(score[i] > score[target] for i in others)


def test_rank_step_excludes_seen_items_and_ranks_over_all_items() -> None:
    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0, 2.0, 1.0], [0.0, 5.0, 4.0, 3.0, 2.0, 1.0]])

    class Fixed(torch.nn.Module):
        def forward(self, history: torch.Tensor) -> torch.Tensor:
            return scores[: len(history)].clone()

    batch = collate(
        [
            {"history": np.array([1]), "seen": np.array([1, 2]), "target": 4, "user": 0},
            {"history": np.array([3]), "seen": np.array([3, 4]), "target": 4, "user": 1},
        ]
    )
    out = rank_step(Fixed(), batch)
    assert out["rank"][0] == 1  # items 1, 2 are seen: only item 3 scores above item 4
    assert torch.isinf(out["rank"][1])  # target already seen → a miss
    assert out["top"][0, :3].tolist() == [3, 4, 5]


def test_demo_popularity_baseline_is_weak_but_nonzero(plugin, demo_dir: Path, config) -> None:
    data = plugin.load(demo_dir / "market_b.csv", config())
    base = popularity_baseline(data, "test")
    assert 0.01 < base["ndcg@10"] < 0.2
    assert base["hit@10"] >= base["ndcg@10"] >= base["mrr@10"]
