"""Recommend with a tl recsys model.onnx — onnxruntime and numpy only.

    python recsys.py MODEL.onnx LOG.csv [OUT.csv] [TOP_K]

LOG.csv has ``user_id,item_id[,timestamp]`` rows. Each user's history goes to the graph
as item ids (oldest first, left-padded with ""); the graph ignores ids it does not know,
never recommends what the user has seen and returns item ids with their scores. As tl
reads a log: rows without an id or with an unparsable time are dropped, repeated
(user, item, time) rows count once, each user's rows are ordered by time (file order
without a time column). Writes ``user_id,rank,item_id,score`` (to stdout without OUT.csv).
"""

from __future__ import annotations

import csv
import json
import math
import sys

import numpy as np
import onnxruntime as ort


def seconds(text: str | None, row: int) -> float:
    if text is None:
        return float(row)
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value


def histories(path: str) -> dict[str, list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    seen, events = set(), []
    for row, record in enumerate(table):
        user, item = record["user_id"].strip(), record["item_id"].strip()
        time = seconds(record.get("timestamp"), row)
        if not user or not item or math.isnan(time) or (user, item, time) in seen:
            continue
        seen.add((user, item, time))
        events.append((user, time, row, item))
    result: dict[str, list[str]] = {}
    for user, _, _, item in sorted(events):
        result.setdefault(user, []).append(item)
    return result


def main(model_path: str, data: str, out: str | None = None, top_k: str | None = None) -> None:
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["tl"])
    k = int(top_k or meta["k"])
    users = histories(data)
    rows = []
    names = sorted(users)
    for start in range(0, len(names), 256):
        chunk = names[start : start + 256]
        width = max(1, max(len(users[u]) for u in chunk))
        batch = np.full((len(chunk), width), "", dtype=object)
        for i, user in enumerate(chunk):
            batch[i, width - len(users[user]) :] = users[user]
        ids, scores = session.run(["top_items", "top_scores"], {"item_history": batch})
        for user, row_ids, row_scores in zip(chunk, ids[:, :k], scores[:, :k], strict=True):
            rows += [
                [user, r + 1, i, f"{s:.9g}"]
                for r, (i, s) in enumerate(zip(row_ids, row_scores, strict=True))
                if i
            ]
    with open(out, "w", newline="") if out else sys.stdout as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "rank", "item_id", "score"])
        writer.writerows(rows)


if __name__ == "__main__":
    main(*sys.argv[1:5])
