"""Peak memory of `tl predict` for fraud on a large transaction file (streamed in chunks).

    python tests/bench/fraud_predict_memory.py [--rows 5000000] [--run RUN_DIR] [--format csv|parquet]

Generates ``--rows`` transactions with the demo generator (written in chunks, so the
benchmark itself stays small), trains a tiny model when no ``--run`` is given, then runs
`tl predict` in a child process and prints its peak RSS, rows/s and the file size. With
streaming the peak stays near the chunk size (`tl_fraud.runtime.CHUNK_ROWS`), not the file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import RUNNER, peak_rss_mb  # noqa: E402


def write_rows(path: Path, rows: int, fmt: str, chunk: int = 250_000) -> None:
    from tl_fraud.demo import NEW_MARKET, generate

    writer = None
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        frame = generate(NEW_MARKET, n, np.random.default_rng(start), "2024-07-01", 30, 0.02)
        frame["transaction_id"] = [f"T{start + i:09d}" for i in range(n)]
        if fmt == "csv":
            frame.to_csv(path, mode="a", header=start == 0, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema))
    if writer is not None:
        writer.close()


def tl(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tl.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--run", type=Path)
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tl-fraud-mem-"))
    run = args.run
    if run is None:
        train = work / "train.csv"
        write_rows(train, 3000, "csv")
        run = Path(tl("run", "fraud", "--data", str(train), "--target", "is_fraud",
                      "--time-column", "ts", "--drop", "transaction_id", "--drop", "card_id",
                      "--d-token", "8", "--n-blocks", "1", "--epochs", "1", "--weights", "none",
                      "--device", "cpu", "--out", str(work / "runs")).stdout.split()[-1])  # fmt: skip
    data = work / f"big.{args.format}"
    t0 = time.time()
    write_rows(data, args.rows, args.format)
    print(
        f"wrote {args.rows:,} rows ({data.stat().st_size / 2**20:.0f} MiB) in {time.time() - t0:.0f}s"
    )
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, "predict", str(run), "--data", str(data),
         "--device", "cpu", "--out", str(work / "scores.csv")],  # fmt: skip
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"},
    )  # fmt: skip
    seconds = time.time() - t0
    if proc.returncode:
        sys.exit(proc.stderr)
    peak_mib = peak_rss_mb(proc.stderr)
    progress = [ln for ln in proc.stderr.splitlines() if "scored" in ln]
    print(f"tl predict: {args.rows:,} rows in {seconds:.0f}s ({args.rows / seconds:,.0f} rows/s), "
          f"peak RSS {peak_mib:.0f} MiB, {len(progress)} progress lines")  # fmt: skip


if __name__ == "__main__":
    main()
