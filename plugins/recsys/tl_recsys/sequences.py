"""User item sequences in CSR form, the item vocabulary, and the leave-last-out split.

Index 0 is the padding / unknown item; the vocabulary's item ``i`` has index ``i + 1``.
No torch: the runtime builds histories with the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .readers import ITEM, TIME, USER

PAD = 0
SPLITS = ("train", "val", "test")


@dataclass
class Sequences:
    """All users' time-ordered item indices, concatenated; user ``u`` owns
    ``items[offsets[u]:offsets[u + 1]]``."""

    users: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def of(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def select(self, keep_users: np.ndarray, keep_rows: np.ndarray | None = None) -> Sequences:
        """A subset of users (bool mask over users) and optionally of rows (bool mask)."""
        owner = np.repeat(np.arange(len(self)), self.lengths)
        rows = keep_users[owner] if keep_rows is None else keep_users[owner] & keep_rows
        counts = np.bincount(owner[rows], minlength=len(self))[keep_users]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return Sequences(self.users[keep_users], offsets, self.items[rows], self.times[rows])


def build_vocab(items: pd.Series | np.ndarray) -> list[str]:
    """The catalogue: distinct item ids, sorted so the order does not depend on the file."""
    return sorted(pd.unique(pd.Series(items, dtype="string")).tolist())


def encode(frame: pd.DataFrame, vocab: list[str]) -> Sequences:
    """A user/time-sorted log → `Sequences`; items missing from ``vocab`` become `PAD`."""
    index = pd.Index(vocab)
    codes = index.get_indexer(frame[ITEM].astype("string")) + 1
    users, starts = np.unique(frame[USER].to_numpy(dtype=object), return_index=True)
    order = np.argsort(starts)
    users, starts = users[order], starts[order]
    offsets = np.append(starts, len(frame)).astype(np.int64)
    if not np.all(np.diff(offsets) > 0):  # frame was not grouped by user
        raise ValueError("frame must be sorted by user")
    return Sequences(
        users=users.astype(str),
        offsets=offsets,
        items=codes.astype(np.int64),
        times=frame[TIME].to_numpy(dtype="float64"),
    )


def first_k(seqs: Sequences, k: int) -> Sequences:
    """Only each user's first ``k`` interactions (a newly arrived user)."""
    owner = np.repeat(np.arange(len(seqs)), seqs.lengths)
    position = np.arange(len(seqs.items)) - seqs.offsets[owner]
    return seqs.select(np.ones(len(seqs), bool), position < k)


def drop_short(seqs: Sequences, min_length: int = 3) -> tuple[Sequences, int, int]:
    """Users with fewer than ``min_length`` interactions removed; (seqs, users, rows) dropped."""
    keep = seqs.lengths >= min_length
    dropped_rows = int(seqs.lengths[~keep].sum())
    return seqs.select(keep), int((~keep).sum()), dropped_rows


@dataclass
class LeaveLastOut:
    """Per user: the last item is the test target, the second to last the validation target,
    the rest is training. ``ends[split]`` is the absolute row of each user's target; the
    history is everything of that user before it."""

    seqs: Sequences

    def target_rows(self, split: str) -> np.ndarray:
        back = {"val": 2, "test": 1}[split]
        return self.seqs.offsets[1:] - back

    def train_rows(self) -> np.ndarray:
        """Bool mask over ``seqs.items``: the interactions used for training."""
        mask = np.ones(len(self.seqs.items), bool)
        mask[self.target_rows("val")] = False
        mask[self.target_rows("test")] = False
        return mask

    def train_windows(self, max_len: int) -> np.ndarray:
        """``(start, end)`` row ranges of at most ``max_len + 1`` training items per window.

        Long histories are cut from the end into windows that overlap by one item, so every
        transition is trained on exactly once; one-item windows are skipped.
        """
        starts = self.seqs.offsets[:-1]
        ends = self.seqs.offsets[1:] - 2
        windows = []
        while True:
            length = ends - starts
            active = length >= 2
            if not active.any():
                break
            lo = np.maximum(starts, ends - (max_len + 1))
            windows.append(np.stack([lo[active], ends[active]], axis=1))
            ends = np.where(active, lo + 1, starts)
        if not windows:
            return np.zeros((0, 2), np.int64)
        return np.concatenate(windows).astype(np.int64)

    def split_frame(self) -> pd.DataFrame:
        """One row per interaction: which split it feeds (``item`` is the user id)."""
        split = np.full(len(self.seqs.items), "train", dtype=object)
        split[self.target_rows("val")] = "val"
        split[self.target_rows("test")] = "test"
        users = np.repeat(self.seqs.users, self.seqs.lengths)
        return pd.DataFrame({"item": users, "position": self._positions(), "split": split})

    def _positions(self) -> np.ndarray:
        owner = np.repeat(np.arange(len(self.seqs)), self.seqs.lengths)
        return np.arange(len(self.seqs.items)) - self.seqs.offsets[owner]


def left_pad(rows: list[np.ndarray], length: int | None = None) -> np.ndarray:
    """Stack int arrays into ``(B, T)`` int64 with `PAD` on the left (the newest item last)."""
    if length is None:
        length = max(1, max((len(r) for r in rows), default=1))
    out = np.full((len(rows), length), PAD, np.int64)
    for i, row in enumerate(rows):
        row = row[-length:]
        if len(row):
            out[i, length - len(row) :] = row
    return out


class TrainWindows:
    """Map-style dataset of training windows (numpy item-index arrays)."""

    def __init__(self, seqs: Sequences, windows: np.ndarray) -> None:
        self.items = seqs.items
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> np.ndarray:
        start, end = self.windows[i]
        return self.items[start:end]


class NextItemTargets:
    """Map-style dataset: each user's history (last ``max_len``), seen items, and target."""

    def __init__(self, seqs: Sequences, target_rows: np.ndarray, max_len: int) -> None:
        self.items = seqs.items
        self.starts = seqs.offsets[:-1]
        self.targets = target_rows
        self.max_len = max_len

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, np.ndarray | int]:
        start, end = int(self.starts[i]), int(self.targets[i])
        seen = self.items[start:end]
        return {
            "history": seen[-self.max_len :],
            "seen": seen,
            "target": int(self.items[end]),
            "user": i,
        }
