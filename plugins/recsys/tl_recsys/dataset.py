"""``plugin.load``: a log file → leave-last-out `RecsysData` (no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tl.core import ConfigError, DataError, TLData

from .ranking import PROTOCOL, item_counts, popularity_ranks, rank_metrics
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
DEFAULT_MAX_LEN = 50


@dataclass
class RecsysData(TLData):
    """`TLData` plus the item vocabulary, the sequences and the popularity baseline."""

    vocab: list[str] = field(default_factory=list)
    seqs: Sequences | None = None
    baseline: dict[str, dict[str, float]] = field(default_factory=dict)
    export_k: int = 100

    @property
    def n_items(self) -> int:
        return len(self.vocab)


def _positive_int(options: dict[str, Any], key: str, default: int | None) -> int | None:
    value = options.get(key)
    if value is None:
        return default
    if int(value) < 1:
        raise ConfigError(
            f"--{key.replace('_', '-')} must be at least 1", key, "pass a positive number"
        )
    return int(value)


def load_data(path: Path, options: dict[str, Any]) -> RecsysData:
    """Read, clean and split a log; the catalogue is every item the cleaned log contains."""
    readout = read_log(Path(path), LogColumns.from_options(options), options.get("min_rating"))
    vocab = build_vocab(readout.frame["item_id"])
    seqs = encode(readout.frame, vocab)
    notes = dict(readout.notes)
    k = _positive_int(options, "first_k", None)
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
    max_len = _positive_int(options, "max_len", DEFAULT_MAX_LEN)
    lol = LeaveLastOut(seqs)
    counts = item_counts(lol, len(vocab))
    pop_ranks = {s: popularity_ranks(lol, s, counts) for s in ("val", "test")}
    baseline = {s: rank_metrics(r) for s, r in pop_ranks.items()}
    repeated = int(np.isinf(pop_ranks["test"]).sum())
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
        "test_targets_already_seen": repeated,
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
        baseline=baseline,
        export_k=_positive_int(options, "top_k", 100) or 100,
    )
