"""`tl tune` vs the default `tl run` on the medical demo, at the same wall-clock budget.

    python tests/bench/tune_vs_default.py [--trials 12] [--epochs 8] [--image-size 64]
                                          [--backbone resnet10t] [--size small] [--out DIR]

One plain `tl run` with the defaults (timed; its test AUROC is the baseline), then
`tl tune` with ``--trials N`` and ``--timeout N × that time``, so the search never gets more
wall clock than N plain runs. Reported: the test AUROC of the trial the study picked (best
validation AUROC, its ``best/`` model), the baseline's, the search's wall time against N ×
the plain run's, and how many trials were pruned. Target: the tuned AUROC is not worse.
Both sides use ``--weights none`` (no hub download) and the same seed and splits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import result  # noqa: E402


def tl(*args: Any) -> tuple[float, str]:
    """`tl ARGS` in a fresh interpreter: (seconds, stdout's last line)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tl.cli.main", *map(str, args)], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"tl {' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--size", default="small", choices=["small", "full"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    root = args.out or Path(tempfile.mkdtemp(prefix="tune-bench-"))
    data = root / "data"
    if not data.exists():
        tl("demo", "medical", data, "--size", args.size)
    common = ["--data", data, "--backbone", args.backbone, "--weights", "none", "--image-size",
              args.image_size, "--epochs", args.epochs, "--device", "auto", "--out", root / "runs"]  # fmt: skip

    plain_seconds, plain_dir = tl("run", "medical", *common)
    plain = json.loads((Path(plain_dir) / "metrics.json").read_text())
    budget = args.trials * plain_seconds
    tune_seconds, tune_dir = tl("tune", "medical", *common, "--trials", args.trials,
                                "--timeout", round(budget, 1), "--study", "bench")  # fmt: skip
    summary = json.loads((Path(tune_dir) / "study.json").read_text())
    best = json.loads((Path(tune_dir) / "best" / "metrics.json").read_text())
    tuned, default = float(best["auroc"]), float(plain["auroc"])
    return result(
        "tune_vs_default",
        tuned,
        default,
        tuned / default,
        ">= 1 (tuned test AUROC not worse than the default run's)",
        tuned >= default,
        trials=summary["trials"],
        pruned=summary.get("n_pruned", 0),
        failed=summary.get("n_fail", 0),
        best_trial=summary["best_trial"],
        best_params=summary["best_params"],
        best_val_auroc=summary["best_val_auroc"],
        tune_seconds=round(tune_seconds, 1),
        plain_seconds=round(plain_seconds, 1),
        budget_seconds=round(budget, 1),
        within_budget=tune_seconds <= budget * 1.05,
        setup={
            "epochs": args.epochs,
            "image_size": args.image_size,
            "backbone": args.backbone,
            "size": args.size,
        },  # fmt: skip
    )


if __name__ == "__main__":
    main()
