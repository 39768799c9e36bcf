"""`tl predict` streams: its peak memory does not grow with the input (8× the images, 4× the
rows cost no more than a small margin). The full sizes are benchmarks: 20k images peak at
273 MB (tests/bench/predict_memory.py), 5M rows at 329 MiB (fraud_predict_memory.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent / "bench"))
from _common import RUNNER, peak_rss_mb  # noqa: E402
from predict_memory import export_model, write_images  # noqa: E402

MARGIN_MB = 60  # per-run noise of the interpreter/onnxruntime; a non-streaming path grows more


def predict_peak(model: Path, data: Path, out: Path) -> tuple[float, str]:
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, "predict", str(model), "--data", str(data),
         "--device", "cpu", "--out", str(out)],  # fmt: skip
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return peak_rss_mb(proc.stderr), proc.stderr


def test_image_predict_memory_is_flat_in_the_number_of_images(tmp_path):
    model = tmp_path / "model.onnx"
    export_model(model, 32)
    peaks = {}
    for n in (150, 1200):
        write_images(tmp_path / f"images-{n}", n, 32)
        out = tmp_path / f"preds-{n}.csv"
        peaks[n], stderr = predict_peak(model, tmp_path / f"images-{n}", out)
        assert len(pd.read_csv(out)) == n
        assert f"{n:,}/{n:,} images (" in stderr
    print(f"peak RSS: 150 images {peaks[150]:.0f} MB, 1200 images {peaks[1200]:.0f} MB")
    assert peaks[1200] < peaks[150] + MARGIN_MB, peaks


@pytest.fixture(scope="module")
def fraud_run(tmp_path_factory):
    from reliability_data import COMMON
    from reliability_data import fraud as fraud_data

    root = tmp_path_factory.mktemp("fraud-memory")
    data, args = fraud_data(root)
    proc = subprocess.run(
        [sys.executable, "-m", "tl.cli", "run", "fraud", "--data", str(data), *args, *COMMON,
         "--epochs", "1", "--out", str(root / "runs")],  # fmt: skip
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def test_table_predict_memory_is_flat_in_the_number_of_rows(fraud_run, tmp_path):
    pytest.importorskip("tl_fraud")
    from tl_fraud.demo import NEW_MARKET, generate
    from tl_fraud.runtime import CHUNK_ROWS

    peaks = {}
    for rows in (CHUNK_ROWS, 4 * CHUNK_ROWS):  # one chunk, then four
        path = tmp_path / f"tx-{rows}.csv"
        generate(NEW_MARKET, rows, np.random.default_rng(rows), "2024-07-01", 30, 0.02).to_csv(
            path, index=False
        )
        out = tmp_path / f"scores-{rows}.csv"
        peaks[rows], _ = predict_peak(fraud_run, path, out)
        assert sum(1 for _ in out.open()) == rows + 1
    small, large = peaks.values()
    print(
        f"peak RSS: {list(peaks)[0]:,} rows {small:.0f} MB, {list(peaks)[1]:,} rows {large:.0f} MB"
    )
    assert large < small + MARGIN_MB, peaks
