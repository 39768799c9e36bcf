"""test_predictions.csv: per test user, the held-out item, its rank and the top 10."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .dataset import RecsysData


def test_predictions(outputs: list[Any], data: RecsysData) -> pd.DataFrame:
    """One row per test user (original ids); ``rank`` is 1-based, -1 when the target was
    already in the history (excluded, a miss)."""
    users = np.concatenate([np.asarray(o["user"]) for o in outputs])
    ranks = np.concatenate([np.asarray(o["rank"]) for o in outputs])
    top = np.concatenate([np.asarray(o["top"]) for o in outputs])
    vocab = np.asarray(["", *data.vocab], dtype=object)
    targets = data.seqs.items[data.test.targets[users]]
    return pd.DataFrame(
        {
            "user_id": data.seqs.users[users],
            "target_item": vocab[targets],
            "rank": np.where(np.isinf(ranks), -1, ranks + 1).astype(np.int64),
            "hit@10": ranks < 10,
            "top10": [" ".join(vocab[row]) for row in top],
        }
    )
