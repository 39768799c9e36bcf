"""Train/val/test assignment of a medical dataset: grouped by patient, stratified by class.

No torch; `assign_splits` is deterministic for a seed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tl.core import ConfigError, DataError

SPLITS: tuple[str, ...] = ("train", "val", "test")


def check_class_counts(frame: pd.DataFrame, where: Any = "", layout: str = "") -> None:
    """Every class needs ≥ 2 images when tl has to split the data."""
    counts = Counter(label for ls in frame["labels"] for label in ls)
    for label, n in sorted(counts.items(), key=lambda kv: (kv[1], kv[0])):
        if n < 2:
            place = Path(where) / label if layout == "folders" else where
            raise DataError(
                f"class '{label}' has only {n} image",
                place,
                "add at least 2 images per class (10+ to learn anything), or remove the class",
            )


def assign_splits(
    frame: pd.DataFrame,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> pd.DataFrame:
    """A copy of ``frame`` with every ``split`` filled in.

    * grouped: rows with the same ``patient`` land in one split (rows without a patient are
      their own group);
    * stratified by the first label: each class gets ≈ the fractions, and every class is in
      every split when it has at least three groups;
    * given ``split`` values are kept. One exception: when no row is given ``val`` but some
      are given ``train`` (a dataset with an official train/test split), the validation set
      is carved out of those ``train`` patients;
    * every split ends up non-empty, else `DataError`.
    """
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"bad split fractions val={val_fraction}, test={test_fraction}",
            "assign_splits",
            "both must be > 0 and sum to < 1",
        )
    df = frame.copy().reset_index(drop=True)
    if df.empty:
        raise DataError("no images to split", "", "check --data")
    check_class_counts(df, where="the data")
    first = df["labels"].map(lambda ls: ls[0]).tolist()
    patients = df["patient"].tolist()
    given = [s if isinstance(s, str) and s else None for s in df["split"].tolist()]
    for s in given:
        if s is not None and s not in SPLITS:
            raise DataError(f"unknown split {s!r}", "split column", "use train, val or test")

    # groups: patient id, or the row itself
    key_of = [f"p:{p}" if isinstance(p, str) and p else f"r:{i}" for i, p in enumerate(patients)]
    members: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(key_of):
        members[k].append(i)
    carve_val = "val" not in given and "train" in given
    allowed: dict[str, tuple[str, ...]] = {}
    placed: dict[str, str] = {}
    for k, idx in members.items():
        fixed = {given[i] for i in idx if given[i] is not None}
        if len(fixed) > 1:
            raise DataError(
                f"patient {patients[idx[0]]} (hashed) is in several splits: {', '.join(sorted(fixed))}",
                "split column of the manifest",
                "put all images of a patient in one split, or leave their split empty",
            )
        if not fixed:
            allowed[k] = SPLITS
        elif fixed == {"train"} and carve_val:
            allowed[k] = ("train", "val")
        else:
            placed[k] = fixed.pop()

    stratum = {k: _majority(first[i] for i in idx) for k, idx in members.items()}
    size = {k: len(idx) for k, idx in members.items()}
    classes = sorted(set(first))
    n_class = Counter(first)
    fraction = {
        "train": 1.0 - val_fraction - test_fraction,
        "val": val_fraction,
        "test": test_fraction,
    }
    target = {s: {c: fraction[s] * n_class[c] for c in classes} for s in SPLITS}
    cur = {s: dict.fromkeys(classes, 0) for s in SPLITS}
    for k, s in placed.items():
        for i in members[k]:
            cur[s][first[i]] += 1

    def put(k: str, s: str) -> None:
        placed[k] = s
        for i in members[k]:
            cur[s][first[i]] += 1

    rng = np.random.default_rng(seed)
    free = list(allowed)
    order = rng.permutation(len(free))
    free = [free[j] for j in order]
    # presence first: every class into every split, using its smallest groups
    for c in classes:
        pool = sorted((k for k in free if stratum[k] == c), key=lambda k: size[k])
        for s in ("train", "test", "val"):
            if cur[s][c] > 0:
                continue
            pick = next((k for k in pool if s in allowed[k] and k not in placed), None)
            if pick is not None:
                put(pick, s)
    # then the rest, largest groups first, into the split that most lacks that class
    rest = sorted((k for k in free if k not in placed), key=lambda k: -size[k])
    for k in rest:
        c = stratum[k]
        best = max(allowed[k], key=lambda s: (target[s][c] - cur[s][c], s == "train"))
        put(k, best)

    # an empty split takes a group from the fullest split that may give one
    for s in SPLITS:
        if any(v == s for v in placed.values()):
            continue
        n_groups = Counter(placed.values())
        donors = [k for k in placed if k in allowed and s in allowed[k] and n_groups[placed[k]] > 1]
        if not donors:
            raise DataError(
                f"too few patients to fill the '{s}' split",
                "the data",
                "add images of more patients, or give the split column explicitly",
            )
        giver = max(SPLITS, key=lambda t: sum(placed[k] == t for k in donors))
        k = min((k for k in donors if placed[k] == giver), key=lambda k: (size[k], k))
        for i in members[k]:
            cur[giver][first[i]] -= 1
        put(k, s)

    df["split"] = [placed[key_of[i]] for i in range(len(df))]
    return df


def _majority(labels: Iterable[str]) -> str:
    counts = Counter(labels)
    return min(counts, key=lambda c: (-counts[c], c))
