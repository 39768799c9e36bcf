"""``tl predict`` / ``tl evaluate`` for recsys: onnxruntime only, no torch.

The log is read whole (its rows must be grouped by user and ordered by time), then users go
to the model a batch at a time; the CSR sequences are the only per-user state and each
batch's histories are built when it is handed out. The core runs the model, shows progress
and writes the rows.

Rows the cleaning drops (missing ids, unparsable timestamps, duplicates) are too many on a
big log to report one by one: their counts by reason go to stderr once, and `score` returns
them under ``notes``. The graph takes the histories as item ids (strings, unknown ones
ignored in the graph) and returns item ids; a model exported before that takes and returns
vocabulary indices, which this module still maps for it. A user that cannot be scored is a `tl.core.Skipped`: one whose every
row was dropped, and for evaluation one with fewer than two interactions.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tl.core import Batches, ConfigError, DataError, InputBatch, OnnxModel, Skipped

from .ranking import PROTOCOL, popularity_ranks, rank_metrics, ranks_from_topk
from .readers import ITEM, USER, LogColumns, LogReadout, read_log
from .sequences import PAD, LeaveLastOut, Sequences, encode, left_pad

INPUT = "item_history"
METRIC_K = 10
LOST = "every row was dropped: no item id or no parsable timestamp"
SHORT = "fewer than 2 interactions: evaluation needs a history and a target"


@dataclass(frozen=True)
class ModelCatalogue:
    """What the exported model's metadata says about its items."""

    items: list[str]
    k: int
    mask_value: float

    @classmethod
    def of(cls, model: OnnxModel) -> ModelCatalogue:
        meta = model.meta
        if meta.get("plugin") not in (None, "recsys") or not isinstance(meta.get("items"), list):
            raise DataError(
                "this model was not exported by the recsys plugin", model.path, "pass a recsys run"
            )
        return cls(meta["items"], int(meta["k"]), float(meta.get("mask_value", -1e9)))


@dataclass(frozen=True)
class LogContext:
    """Every batch's ``extra``: the model's catalogue, its item ids by vocabulary index
    (index 0, the padding, is ''), and the log's `read_notes`."""

    catalogue: ModelCatalogue
    vocab: np.ndarray
    notes: Mapping[str, int]
    #: the log's item ids, row for row with the `Sequences` (None: the model takes indices)
    ids: np.ndarray | None = None

    @classmethod
    def of(
        cls, catalogue: ModelCatalogue, notes: Mapping[str, int], ids: np.ndarray | None = None
    ) -> LogContext:
        vocab = np.asarray(["", *catalogue.items], dtype=object)
        return cls(catalogue, vocab, dict(notes), ids)

    def history(self, seqs: Sequences, start: int, end: int) -> np.ndarray:
        """Rows ``start:end`` of the log as the model's input: ids, or known indices."""
        if self.ids is not None:
            return self.ids[start:end]
        return _known(seqs.items[start:end])

    def pad(self, histories: list[np.ndarray]) -> np.ndarray:
        return left_pad_ids(histories) if self.ids is not None else left_pad(histories)


def read_batches(
    model: OnnxModel, path: Path, options: Mapping[str, Any], batch_size: int, labelled: bool
) -> Batches:
    """Skipped users first, then batches of ``batch_size`` users (sorted by id). Reads the
    log now, so that a bad file or option fails before any output is written."""
    catalogue = ModelCatalogue.of(model)
    if not labelled:
        _check_top_k(int(options["top_k"]), catalogue.k)
    readout = read_log(
        Path(path), LogColumns.from_options(options), options.get("min_rating"), lost_users=True
    )
    seqs = encode(readout.frame, catalogue.items)
    notes = read_notes(readout, seqs)
    if notes:
        print(notes_line(readout, notes), file=sys.stderr, flush=True)
    skipped = [Skipped(user, LOST) for user in readout.lost_users]
    if labelled:
        short = seqs.lengths < 2
        skipped += [Skipped(str(user), SHORT) for user in seqs.users[short]]
        seqs = seqs.select(~short)
    batches = _evaluation_batches if labelled else _prediction_batches
    ids = readout.frame[ITEM].to_numpy(dtype=object) if takes_ids(model) else None
    context = LogContext.of(catalogue, notes, ids)
    stream = _stream(skipped, batches(seqs, context, batch_size) if len(seqs) else [])
    return Batches(stream, total=len(skipped) + len(seqs))


def _stream(
    skipped: list[Skipped], batches: Iterator[InputBatch] | list[InputBatch]
) -> Iterator[InputBatch | Skipped]:
    yield from skipped  # first: the core writes a skipped user's row after the next batch
    yield from batches


def _check_top_k(top_k: int, k: int) -> None:
    if not 1 <= top_k <= k:
        raise ConfigError(
            f"--top-k {top_k} is outside 1..{k}", "--top-k", f"the model returns at most {k} items"
        )


def read_notes(readout: LogReadout, seqs: Sequences) -> dict[str, int]:
    """Rows dropped by reason, their total, the interactions with items the model does not
    know (kept out of the histories) and the users none of whose items it knows."""
    notes = dict(readout.notes)
    if readout.rows_dropped:
        notes["rows_dropped"] = readout.rows_dropped
    unknown = int((seqs.items == PAD).sum())
    if unknown:
        notes["interactions_with_items_unknown_to_the_model"] = unknown
        known = np.add.reduceat((seqs.items != PAD).astype(np.int64), seqs.offsets[:-1])
        notes["users_without_a_known_item"] = int((known == 0).sum())
    return {k: v for k, v in notes.items() if v}


def notes_line(readout: LogReadout, notes: Mapping[str, int]) -> str:
    """One stderr line, e.g. ``dropped 3 of 1,000 rows (rows with missing id: 2, duplicate
    rows: 1); 5 interactions with items unknown to the model not used; 1 of 40 users has no
    item known to the model (recommended as for an empty history)``."""
    parts = []
    if readout.rows_dropped:
        reasons = ", ".join(f"{why.replace('_', ' ')}: {n:,}" for why, n in readout.notes.items())
        parts.append(
            f"dropped {readout.rows_dropped:,} of {readout.n_rows_read:,} rows ({reasons})"
        )
    unknown = notes.get("interactions_with_items_unknown_to_the_model")
    if unknown:
        parts.append(f"{unknown:,} interactions with items unknown to the model not used")
    lost = notes.get("users_without_a_known_item")
    if lost:
        users = readout.frame[USER].nunique()
        verb = "has" if lost == 1 else "have"
        parts.append(f"{lost:,} of {users:,} users {verb} no item known to the model "
                     "(recommended as for an empty history)")  # fmt: skip
    return "; ".join(parts)


def _known(items: np.ndarray) -> np.ndarray:
    return items[items != PAD]


def takes_ids(model: OnnxModel) -> bool:
    """Does the graph take item ids (strings), or vocabulary indices (older exports)?"""
    return model.session.get_inputs()[0].type == "tensor(string)"


def left_pad_ids(rows: list[np.ndarray]) -> np.ndarray:
    """Item-id rows as ``(B, T)`` strings, "" on the left (T ≥ 1)."""
    width = max(1, max((len(r) for r in rows), default=1))
    out = np.full((len(rows), width), "", dtype=object)
    for i, row in enumerate(rows):
        if len(row):
            out[i, width - len(row) :] = row
    return out


def _prediction_batches(
    seqs: Sequences, context: LogContext, batch_size: int
) -> Iterator[InputBatch]:
    for start in range(0, len(seqs), batch_size):
        users = range(start, min(start + batch_size, len(seqs)))
        bounds = [(seqs.offsets[u], seqs.offsets[u + 1]) for u in users]
        items = pd.DataFrame(
            {
                "user_id": seqs.users[start : users.stop],
                "history_length": [len(_known(seqs.items[a:b])) for a, b in bounds],
            }
        )
        histories = [context.history(seqs, a, b) for a, b in bounds]
        yield InputBatch({INPUT: context.pad(histories)}, items, extra=context)


def _evaluation_batches(
    seqs: Sequences, context: LogContext, batch_size: int
) -> Iterator[InputBatch]:
    """Leave-last-out on new users: each user's last item is the target, the rest the history.
    The popularity baseline counts items in all users' histories of this log."""
    lol = LeaveLastOut(seqs)
    target_rows = lol.target_rows("test")
    targets = seqs.items[target_rows]
    history_rows = np.ones(len(seqs.items), bool)
    history_rows[target_rows] = False
    counts = np.bincount(seqs.items[history_rows], minlength=len(context.catalogue.items) + 1)
    counts[PAD] = 0
    popularity = popularity_ranks(lol, "test", counts)
    for start in range(0, len(seqs), batch_size):
        stop = min(start + batch_size, len(seqs))
        bounds = [(seqs.offsets[u], target_rows[u]) for u in range(start, stop)]
        histories = [context.history(seqs, a, b) for a, b in bounds]
        target = targets[start:stop]
        items = pd.DataFrame(
            {
                "user_id": seqs.users[start:stop],
                "target_item": np.where(target == PAD, None, context.vocab[target]),
                "target_index": target,
                "popularity_rank": popularity[start:stop],
                "history_length": [len(_known(seqs.items[a:b])) for a, b in bounds],
            }
        )
        yield InputBatch({INPUT: context.pad(histories)}, items, extra=context)


def decode(
    model: OnnxModel, batch: InputBatch, outputs: dict[str, Any], options: Mapping[str, Any]
) -> pd.DataFrame:
    """Prediction: the top-k items per user (original ids), seen items excluded.
    Evaluation (the batch has targets): each user's target rank in the model's top 10."""
    context: LogContext = batch.extra
    ids, scores = _top_ids(context, outputs)
    items = batch.items
    if "target_index" in items.columns:
        metric_k = min(METRIC_K, context.catalogue.k)
        target = items["target_item"].to_numpy(dtype=object)
        ranks = ranks_from_topk(ids[:, :metric_k], np.where(pd.isna(target), "", target))
        ranks = np.where(pd.isna(target), np.inf, ranks)
        return items.drop(columns="target_index").assign(rank=ranks)
    top_k = int(options["top_k"])
    ids, scores = ids[:, :top_k], scores[:, :top_k]
    keep = ids != ""
    n = len(items)
    return pd.DataFrame(
        {
            "user_id": np.repeat(items["user_id"].to_numpy(), top_k).reshape(n, top_k)[keep],
            "rank": np.tile(np.arange(1, top_k + 1), (n, 1))[keep],
            "item_id": ids[keep],
            "score": scores[keep].astype(np.float64),
            "history_length": np.repeat(items["history_length"].to_numpy(), top_k).reshape(
                n, top_k
            )[keep],
        }
    )


def _top_ids(context: LogContext, outputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(top item ids, "" where nothing is recommended; their scores) of either graph."""
    top, scores = np.asarray(outputs["top_items"]), np.asarray(outputs["top_scores"])
    if top.dtype == object:
        return top, scores
    keep = (scores > context.catalogue.mask_value / 2) & (top > 0)
    return np.where(keep, context.vocab[top], ""), scores


def score(model: OnnxModel, rows: pd.DataFrame, extras: list[Any]) -> dict[str, Any]:
    """HR/NDCG/MRR@10 of the model and of the log's popularity order, and what was dropped."""
    metric_k = min(METRIC_K, ModelCatalogue.of(model).k)
    metrics: dict[str, Any] = dict(rank_metrics(rows["rank"].to_numpy(), metric_k))
    metrics["baseline"] = {
        "name": "popularity (counts in the histories of this log)",
        **rank_metrics(rows["popularity_rank"].to_numpy(), metric_k),
    }
    metrics["protocol"] = {**PROTOCOL, "split": "last interaction per user is the target"}
    metrics["n_users"] = len(rows)
    metrics["targets_unknown_to_the_model"] = int(rows["target_item"].isna().sum())
    context = next((e for e in extras if isinstance(e, LogContext)), None)
    metrics["notes"] = dict(context.notes) if context is not None else {}
    return metrics
