"""Fraud scoring latency with onnxruntime on CPU: single row p50/p99 and rows/s at batch 4096.

    python tests/bench/fraud_latency.py [RUN_DIR|model.onnx] [--data TABLE] [--threads N]
                                        [--single 300] [--batches 5] [--full]

Without a model, a one-epoch `tl run fraud` on the small demo data makes one first.
``--full``: 2000 single-row calls and 20 batches. `main()` returns the shared bench record:
ours = single-row median latency (ms, ONNX call), baseline = the budget ``--budget-ms``
(2); target ratio ≤ 1. p99 is reported too but not judged: on a shared CPU it measures the
scheduler more than the model.

Without ``--data`` the rows are generated with the demo generator (new-market shape).
The graph takes raw columns and encodes them itself; converting a row of the table into those
inputs (`tl predict`'s part) is timed with the call in ``single_row_with_encoding_ms``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import result  # noqa: E402


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000, q))


def trained_model(workdir: Path) -> Path:
    """A one-epoch fraud run on the small demo data (when no model is given)."""
    import io

    from tl.core.progress import ProgressReporter
    from tl.core.registry import load_plugin
    from tl.core.run import run_plugin

    plugin = load_plugin("fraud")
    data = plugin.demo(workdir / "data", size="small", seed=0) / "new_market.csv"
    options = {"data": str(data), "weights": "none", "epochs": 1, "device": "cpu"}
    options.update(target="is_fraud", time_column="ts", drop=("transaction_id", "card_id"))
    options["out"] = str(workdir / "runs")
    return run_plugin(plugin, options, ProgressReporter(stream=io.StringIO()))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--single", type=int, default=300)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--budget-ms", type=float, default=2.0)
    parser.add_argument("--full", action="store_true", help="2000 single rows, 20 batches")
    args = parser.parse_args(argv)
    if args.full:
        args.single, args.batches = 2000, 20
    if args.model:
        return measure(args)
    with tempfile.TemporaryDirectory() as tmp:
        args.model = str(trained_model(Path(tmp)))
        return measure(args)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from tl.core import load_onnx_model
    from tl_fraud.raw_inputs import feeds as raw_feeds
    from tl_fraud.raw_inputs import inputs_of
    from tl_fraud.runtime import schema_of

    model = load_onnx_model(args.model, device="cpu", threads=args.threads)
    schema, inputs = schema_of(model), inputs_of(model.meta)
    if inputs is None:
        raise SystemExit("this model takes encoded matrices: re-export it with a current tl run")
    if args.data:
        from tl_fraud.readers import read_table

        frame = read_table(args.data)
    else:
        from tl_fraud.demo import NEW_MARKET, generate

        frame = generate(NEW_MARKET, 4096, np.random.default_rng(0), "2024-09-01", 7, 0.01)
    encoded = raw_feeds(frame, inputs, schema)  # the raw columns as the graph takes them
    rows = len(frame)

    def row(j: int) -> dict[str, np.ndarray]:
        return {name: value[j : j + 1] for name, value in encoded.items()}

    for i in range(50):  # warm-up
        model.run(row(i % rows))
    single, single_path = [], []
    for i in range(args.single):
        one = row(i % rows)
        t0 = time.perf_counter()
        model.run(one)
        single.append(time.perf_counter() - t0)
    for i in range(min(args.single, 300)):
        j = i % rows
        t0 = time.perf_counter()
        model.run(raw_feeds(frame.iloc[j : j + 1], inputs, schema))
        single_path.append(time.perf_counter() - t0)

    batch = 4096
    reps = np.resize(np.arange(rows), batch)
    feeds = {name: value[reps] for name, value in encoded.items()}
    model.run(feeds)
    t0 = time.perf_counter()
    for _ in range(args.batches):
        model.run(feeds)
    throughput = args.batches * batch / (time.perf_counter() - t0)

    p50, p99 = percentile_ms(single, 50), percentile_ms(single, 99)
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
        ),
        file=sys.stderr,
    )
    return result(
        "fraud_latency", p50, args.budget_ms, p50 / args.budget_ms, "<= 1 (p50/budget)",
        p50 <= args.budget_ms, unit="ms", p99_ms=round(p99, 3),
        rows_per_second_batch_4096=round(throughput),
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
