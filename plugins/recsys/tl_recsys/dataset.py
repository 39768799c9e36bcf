"""``plugin.load``: a log file → leave-last-out `RecsysData` (no torch)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tl.core import ConfigError, DataError, TLData

from .ranking import PROTOCOL, item_counts, popularity_ranks, rank_metrics, seen_targets
from .readers import LogColumns, read_log
from .sequences import (
    LeaveLastOut,
    NextItemTargets,
    Sequences,
    TrainWindows,
    build_vocab,
    drop_short,
    encode,
    first_k,
)

MIN_INTERACTIONS = 3


@dataclass
class RecsysData(TLData):
    """`TLData` plus the item vocabulary and the sequences (nothing here changes after load)."""

    vocab: list[str] = field(default_factory=list)
    seqs: Sequences | None = None

    @property
    def n_items(self) -> int:
        return len(self.vocab)


def load_data(path: Path, options: Mapping[str, Any]) -> RecsysData:
    """Read, clean and split a log; the catalogue is every item the cleaned log contains."""
    readout = read_log(Path(path), LogColumns.from_options(options), options["min_rating"])
    vocab = build_vocab(readout.frame["item_id"])
    seqs = encode(readout.frame, vocab)
    notes = dict(readout.notes)
    k = options.get("first_k")  # `tl run` only, not `tl pretrain`
    if k is not None:
        if k < MIN_INTERACTIONS:
            raise ConfigError(
                f"--first-k must be at least {MIN_INTERACTIONS}", "--first-k",
                "leave-last-out needs a train, a validation and a test interaction",
            )  # fmt: skip
        before = len(seqs.items)
        seqs = first_k(seqs, k)
        notes["interactions_after_first_k_dropped"] = before - len(seqs.items)
    seqs, short_users, short_rows = drop_short(seqs, MIN_INTERACTIONS)
    if short_users:
        notes["users_with_fewer_than_3_interactions"] = short_users
        notes["interactions_of_short_users"] = short_rows
    if len(seqs) == 0:
        raise DataError(
            f"no user has {MIN_INTERACTIONS} or more interactions",
            path,
            "leave-last-out needs at least 3 interactions per user; pass a longer log",
        )
    max_len = int(options["max_len"])
    lol = LeaveLastOut(seqs)
    counts = item_counts(lol, len(vocab))
    info = {
        "log": str(path),
        "rows_read": readout.n_rows_read,
        "users": len(seqs),
        "items": len(vocab),
        "interactions": int(len(seqs.items)),
        "items_never_in_train": int((counts[1:] == 0).sum()),
        "ordered_by": "timestamp" if readout.has_time else "row order (no timestamp column)",
        "first_k": k,
        "max_len": max_len,
        "test_targets_already_seen": int(seen_targets(lol, "test").sum()),
        "dropped": notes,
        "protocol": PROTOCOL,
    }
    windows = lol.train_windows(max_len)
    return RecsysData(
        train=TrainWindows(seqs, windows),
        val=NextItemTargets(seqs, lol.target_rows("val"), max_len),
        test=NextItemTargets(seqs, lol.target_rows("test"), max_len),
        splits=lol.split_frame().assign(item_id=np.asarray(vocab, dtype=object)[seqs.items - 1]),
        task="next-item recommendation",
        info=info,
        vocab=vocab,
        seqs=seqs,
    )


def popularity_baseline(data: RecsysData, split: str = "test") -> dict[str, Any]:
    """Most popular training items first (seen items excluded) on ``split``: what the model
    has to beat. Depends on the data only; computed when asked (fast, vectorised)."""
    lol = LeaveLastOut(data.seqs)
    ranks = popularity_ranks(lol, split, item_counts(lol, data.n_items))
    return {"name": "popularity", **rank_metrics(ranks)}
