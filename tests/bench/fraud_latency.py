"""Fraud scoring latency with onnxruntime on CPU: single row p50/p99 and rows/s at batch 4096.

    python tests/bench/fraud_latency.py RUN_DIR|model.onnx [--data TABLE] [--threads N]

Without ``--data`` the rows are generated with the demo generator (new-market shape).
Encoding (vocabulary lookup, datetime parts) is timed separately from the ONNX call, so the
figures show both the model and the full `tl predict` path for one row.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000, q))


def main() -> None:
    from tl.core import load_onnx_model
    from tl_fraud.runtime import schema_of

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--single", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()

    model = load_onnx_model(args.model, device="cpu", threads=args.threads)
    schema = schema_of(model)
    if args.data:
        from tl_fraud.readers import read_table

        frame = read_table(args.data)
    else:
        from tl_fraud.demo import NEW_MARKET, generate

        frame = generate(NEW_MARKET, 4096, np.random.default_rng(0), "2024-09-01", 7, 0.01)
    numeric, categorical, _ = schema.encode(frame)
    rows = len(frame)

    for i in range(50):  # warm-up
        model.run(
            {
                "numeric": numeric[i % rows : i % rows + 1],
                "categorical": categorical[i % rows : i % rows + 1],
            }
        )
    single, single_path = [], []
    for i in range(args.single):
        j = i % rows
        t0 = time.perf_counter()
        model.run({"numeric": numeric[j : j + 1], "categorical": categorical[j : j + 1]})
        single.append(time.perf_counter() - t0)
    for i in range(min(args.single, 300)):
        j = i % rows
        t0 = time.perf_counter()
        n, c, _ = schema.encode(frame.iloc[j : j + 1])
        model.run({"numeric": n, "categorical": c})
        single_path.append(time.perf_counter() - t0)

    batch = 4096
    reps = np.resize(np.arange(rows), batch)
    feeds = {"numeric": numeric[reps], "categorical": categorical[reps]}
    model.run(feeds)
    t0 = time.perf_counter()
    for _ in range(args.batches):
        model.run(feeds)
    throughput = args.batches * batch / (time.perf_counter() - t0)

    print(
        json.dumps(
            {
                "model": str(model.path),
                "providers": model.providers,
                "threads": args.threads,
                "single_row_ms": {
                    "p50": percentile_ms(single, 50),
                    "p99": percentile_ms(single, 99),
                },
                "single_row_with_encoding_ms": {
                    "p50": percentile_ms(single_path, 50),
                    "p99": percentile_ms(single_path, 99),
                },
                "rows_per_second_batch_4096": round(throughput),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
