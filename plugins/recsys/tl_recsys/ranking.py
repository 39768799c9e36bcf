"""Full-ranking metrics (HR, NDCG, MRR at k) and the popularity baseline. No torch.

A user's *rank* is the 0-based position of their target among all catalogue items that
are not in their history (so it ranks against every item, no sampling). A target the user
has already seen is excluded like every seen item, so it counts as a miss.
"""

from __future__ import annotations

import numpy as np

from .sequences import LeaveLastOut

PROTOCOL = {
    "split": "leave-last-out per user by time (last item test, second-to-last validation)",
    "ranking": "full ranking over all catalogue items",
    "exclude": "items already in the user's history (a repeated target counts as a miss)",
    "k": 10,
}


def rank_metrics(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    """HR@k, NDCG@k and MRR@k from 0-based ranks (one relevant item per user)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        return {f"ndcg@{k}": 0.0, f"hit@{k}": 0.0, f"mrr@{k}": 0.0}
    hit = ranks < k
    return {
        f"ndcg@{k}": float(np.mean(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0))),
        f"hit@{k}": float(np.mean(hit)),
        f"mrr@{k}": float(np.mean(np.where(hit, 1.0 / (ranks + 1.0), 0.0))),
    }


def ranks_from_topk(topk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Ranks of ``targets`` in each row of ``topk`` item indices; ``inf`` when absent."""
    match = topk == np.asarray(targets)[:, None]
    found = match.any(axis=1)
    return np.where(found, match.argmax(axis=1), np.inf)


def item_counts(lol: LeaveLastOut, n_items: int) -> np.ndarray:
    """How often each item index appears in the training part (index 0 stays 0)."""
    counts = np.bincount(lol.seqs.items[lol.train_rows()], minlength=n_items + 1)
    counts[0] = 0
    return counts


def seen_targets(lol: LeaveLastOut, split: str) -> np.ndarray:
    """Per user: is the ``split`` target already in the history (so it counts as a miss)?"""
    seqs = lol.seqs
    target_rows = lol.target_rows(split)
    owner = np.repeat(np.arange(len(seqs)), seqs.lengths)
    before = np.arange(len(seqs.items)) < target_rows[owner]
    repeat = before & (seqs.items == seqs.items[target_rows][owner])
    return np.bincount(owner[repeat], minlength=len(seqs)) > 0


def popularity_ranks(lol: LeaveLastOut, split: str, counts: np.ndarray) -> np.ndarray:
    """Ranks under "most popular first, seen items excluded" for every user of ``split``.

    Ties in popularity are broken by item index (as a top-k over the counts would), so a
    global order gives each item one position; the seen items ranked above the target
    are subtracted per user, which is exact and needs no user × item matrix.
    """
    seqs = lol.seqs
    n_items = len(counts) - 1
    order = np.lexsort((np.arange(1, n_items + 1), -counts[1:])) + 1
    position = np.empty(n_items + 1, np.int64)
    position[order] = np.arange(n_items)
    position[0] = -1
    target_rows = lol.target_rows(split)
    targets = seqs.items[target_rows]
    owner = np.repeat(np.arange(len(seqs)), seqs.lengths)
    before = np.arange(len(seqs.items)) < target_rows[owner]
    users, seen_items = owner[before], seqs.items[before]
    pairs = np.unique(users * (n_items + 1) + seen_items)
    pair_users, pair_items = pairs // (n_items + 1), pairs % (n_items + 1)
    valid = pair_items > 0
    above = valid & (position[pair_items] < position[targets][pair_users])
    seen_above = np.bincount(pair_users[above], minlength=len(seqs))
    ranks = (position[targets] - seen_above).astype(np.float64)
    repeated = np.bincount(
        pair_users[valid & (pair_items == targets[pair_users])], minlength=len(seqs)
    )
    ranks[(repeated > 0) | (targets == 0)] = np.inf
    return ranks
