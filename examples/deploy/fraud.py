"""Score a transaction CSV with a tl fraud model.onnx — onnxruntime and numpy only.

    python fraud.py MODEL.onnx TRANSACTIONS.csv [OUT.csv]

The graph takes one input per raw column (``metadata["inputs"]``: name, column, type) and
does all the encoding itself; this client only turns CSV text into the input's dtype:
numbers → float64 (empty = NaN), text and booleans → stripped strings (empty = missing),
datetimes (ISO 8601, or epoch seconds) → int64 epoch seconds UTC (missing = int64 min).
Writes ``row,fraud_probability,alert`` (to stdout without OUT.csv).
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime, timezone

import numpy as np
import onnxruntime as ort

MISSING_TIME = np.iinfo(np.int64).min


def number(text: str) -> float:
    try:
        return float(text) if text.strip() else float("nan")
    except ValueError:
        raise SystemExit(f"not a number: {text!r}") from None


def epoch_seconds(text: str) -> int:
    text = text.strip()
    if not text:
        return MISSING_TIME
    try:
        return int(np.floor(float(text)))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return MISSING_TIME  # tl reads an unparsable time as missing too
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(np.floor(moment.timestamp()))


CONVERT = {
    "double": lambda values: np.array([number(v) for v in values], dtype=np.float64),
    "string": lambda values: np.array([v.strip() for v in values], dtype=object),
    "int64": lambda values: np.array([epoch_seconds(v) for v in values], dtype=np.int64),
}


def main(model_path: str, data: str, out: str | None = None, batch: int = 8192) -> None:
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["tl"])
    with open(data, newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    rows = []
    for start in range(0, len(table), batch):
        chunk = table[start : start + batch]
        feeds = {
            spec["name"]: CONVERT[spec["dtype"]]([row[spec["column"]] for row in chunk])
            for spec in meta["inputs"]
        }
        probability, alert = session.run(["probability", "alert"], feeds)
        rows += [
            [start + i, f"{p:.9g}", bool(a)]
            for i, (p, a) in enumerate(zip(probability, alert, strict=True))
        ]
    with open(out, "w", newline="") if out else sys.stdout as fh:
        writer = csv.writer(fh)
        writer.writerow(["row", "fraud_probability", "alert"])
        writer.writerows(rows)


if __name__ == "__main__":
    main(*sys.argv[1:4])
