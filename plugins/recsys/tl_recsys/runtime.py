"""``tl predict`` / ``tl evaluate`` for recsys: onnxruntime only, no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tl.core import ConfigError, DataError, OnnxModel, Throughput

from .ranking import PROTOCOL, popularity_ranks, rank_metrics, ranks_from_topk
from .readers import LogColumns, read_log
from .sequences import PAD, LeaveLastOut, Sequences, encode, left_pad

INPUT = "item_history"
BATCH = 256


def _model_items(model: OnnxModel) -> tuple[list[str], int, float]:
    meta = model.meta
    if meta.get("plugin") not in (None, "recsys") or not isinstance(meta.get("items"), list):
        raise DataError(
            "this model was not exported by the recsys plugin", model.path, "pass a recsys run"
        )
    return meta["items"], int(meta["k"]), float(meta.get("mask_value", -1e9))


def _read(path: Path, options: dict[str, Any], items: list[str]) -> tuple[Sequences, dict]:
    readout = read_log(Path(path), LogColumns.from_options(options), options.get("min_rating"))
    seqs = encode(readout.frame, items)
    notes = dict(readout.notes)
    unknown = int((seqs.items == PAD).sum())
    if unknown:
        notes["interactions_with_items_unknown_to_the_model"] = unknown
    return seqs, notes


def _top_k(model: OnnxModel, histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    indices, scores = [], []
    with Throughput(len(histories), "users") as progress:
        for start in range(0, len(histories), BATCH):
            out = model.run({INPUT: left_pad(histories[start : start + BATCH])})
            indices.append(out["top_items"])
            scores.append(out["top_scores"])
            progress.add(len(out["top_items"]))
    return np.concatenate(indices), np.concatenate(scores)


def recommend(model: OnnxModel, path: Path, options: dict[str, Any]) -> pd.DataFrame:
    """Top-k items per user of the log (original item ids), seen items excluded."""
    items, k, mask_value = _model_items(model)
    top_k = int(options.get("top_k") or 10)
    if not 1 <= top_k <= k:
        raise ConfigError(
            f"--top-k {top_k} is outside 1..{k}", "--top-k", f"the model returns at most {k} items"
        )
    seqs, _ = _read(path, options, items)
    histories = [seqs.of(u)[seqs.of(u) != PAD] for u in range(len(seqs))]
    indices, scores = _top_k(model, histories)
    indices, scores = indices[:, :top_k], scores[:, :top_k]
    keep = (scores > mask_value / 2) & (indices > 0)
    users = np.repeat(seqs.users, top_k).reshape(len(seqs), top_k)
    ranks = np.tile(np.arange(1, top_k + 1), (len(seqs), 1))
    vocab = np.asarray([""] + list(items), dtype=object)
    return pd.DataFrame(
        {
            "user_id": users[keep],
            "rank": ranks[keep],
            "item_id": vocab[indices[keep]],
            "score": scores[keep].astype(np.float64),
            "history_length": np.repeat([len(h) for h in histories], top_k).reshape(
                len(seqs), top_k
            )[keep],
        }
    )


def evaluate_log(model: OnnxModel, path: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Leave-last-out on new users: each user's last item against a top-k from the rest."""
    items, k, _ = _model_items(model)
    seqs, notes = _read(path, options, items)
    short = seqs.lengths < 2
    if short.all():
        raise DataError(
            "no user has 2 or more interactions", path, "evaluation needs a history and a target"
        )
    if short.any():
        notes["users_with_fewer_than_2_interactions"] = int(short.sum())
        seqs = seqs.select(~short)
    lol = LeaveLastOut(seqs)
    target_rows = lol.target_rows("test")
    targets = seqs.items[target_rows]
    histories = [
        seqs.items[s:e][seqs.items[s:e] != PAD]
        for s, e in zip(seqs.offsets[:-1], target_rows, strict=True)
    ]
    indices, _ = _top_k(model, histories)
    metric_k = min(10, k)
    ranks = ranks_from_topk(indices[:, :metric_k], np.where(targets == PAD, -1, targets))
    history_rows = np.ones(len(seqs.items), bool)
    history_rows[target_rows] = False
    counts = np.bincount(seqs.items[history_rows], minlength=len(items) + 1)
    counts[PAD] = 0
    metrics: dict[str, Any] = dict(rank_metrics(ranks, metric_k))
    metrics["baseline"] = {
        "name": "popularity (counts in the histories of this log)",
        **rank_metrics(popularity_ranks(lol, "test", counts), metric_k),
    }
    metrics["protocol"] = {**PROTOCOL, "split": "last interaction per user is the target"}
    metrics["n_users"] = len(seqs)
    metrics["targets_unknown_to_the_model"] = int((targets == PAD).sum())
    metrics["notes"] = notes
    return metrics
