"""Train/validation/test splits: out-of-time, entity-grouped, or stratified random.

Validation and test are never resampled: they keep the real fraud rate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tl.core import DataError

SPLITS = ("train", "val", "test")


def assign_splits(
    labels: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    times: pd.Series | None = None,
    groups: pd.Series | None = None,
) -> np.ndarray:
    """One of ``train``/``val``/``test`` per row.

    With ``times``: the earliest rows train, the latest test (never shuffled across time);
    with ``groups`` too, an entity goes wholly to the split of its first transaction.
    With ``groups`` only: a random split of entities. Otherwise stratified by label.
    """
    n = len(labels)
    cut_val, cut_test = 1.0 - val_fraction - test_fraction, 1.0 - test_fraction
    if cut_val <= 0:
        raise DataError("--val-fraction + --test-fraction leave no training rows", "splits")
    rng = np.random.default_rng(seed)
    if times is not None:
        key = times.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
        if groups is not None:
            key = pd.Series(key).groupby(groups.to_numpy()).transform("min").to_numpy()
        rank = pd.Series(key).rank(method="first").to_numpy() - 1
        position = rank / max(1, n)
    elif groups is not None:
        codes, uniques = pd.factorize(groups, use_na_sentinel=False)
        position = rng.random(len(uniques))[codes]
    else:
        position = np.empty(n)
        for value in (0, 1):
            index = np.nonzero(labels == value)[0]
            position[index] = (rng.permutation(len(index)) + 0.5) / max(1, len(index))
    split = np.where(position < cut_val, "train", np.where(position < cut_test, "val", "test"))
    for name, fraction in zip(SPLITS, (cut_val, val_fraction, test_fraction), strict=True):
        if fraction <= 0:
            continue
        chosen = labels[split == name]
        if chosen.size == 0 or chosen.sum() == 0:
            raise DataError(
                f"the {name} split has no fraud rows ({chosen.size} rows)",
                "splits",
                "use more labelled data, or change --val-fraction/--test-fraction",
            )
    return split
