"""int8 vs fp32 on CPU: `tl export RUN_DIR --precision int8`, its size, metric deltas and
CPU latency ratio (measured in one process, one thread, calls interleaved).

    python tests/bench/quantized_vs_fp32.py [RUN_DIR] [--image-size 224] [--epochs 1]
                                            [--calibration 256] [--backbone resnet10t]

Without RUN_DIR, `tl demo medical DIR --size small` (300 images) and a short `tl run
medical` with ``--backbone`` at ``--image-size`` make one first (the default image size:
a 32-px toy does not show the real ratio). `main()` returns the shared bench record:
ours = int8 latency, baseline = fp32 latency (ms per batch), target ratio ≤ 1; the size
ratio (target ≤ 0.35) and the monitored metric's delta are in the record too.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from _common import result  # noqa: E402


def trained_run(work: Path, args: argparse.Namespace) -> Path:
    from cli_inprocess import invoke

    code, out, err = invoke("demo", "medical", str(work / "demo"), "--size", "small")
    assert code == 0, err[-2000:]
    data = out.strip().splitlines()[-1]
    code, out, err = invoke("run", "medical", "--data", data, "--backbone", args.backbone,
                            "--image-size", str(args.image_size), "--epochs", str(args.epochs),
                            "--weights", "none", "--device", "cpu", "--seed", "0",
                            "--out", str(work / "runs"))  # fmt: skip
    assert code == 0, err[-3000:]
    return Path(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--calibration", type=int, default=256)
    parser.add_argument("--max-drop", type=float, default=0.01)
    args = parser.parse_args(argv)

    from cli_inprocess import invoke

    with tempfile.TemporaryDirectory(prefix="tl-int8-bench-") as tmp:
        run = args.run_dir or trained_run(Path(tmp), args)
        code, _, err = invoke("export", str(run), "--precision", "int8", "--calibration",
                              str(args.calibration), "--max-drop", str(args.max_drop))  # fmt: skip
        entry = json.loads((run / "export.json").read_text())["int8"]
        if code != 0:
            print(err.strip().splitlines()[-1], file=sys.stderr)
        latency = entry.get("cpu_latency_ms", {"fp32": float("nan"), "variant": float("nan")})
        return result(
            "quantized_vs_fp32",
            latency["variant"],
            latency["fp32"],
            entry.get("cpu_latency_ratio", float("nan")),
            "<= 1 (latency); size <= 0.35",
            code == 0 and entry.get("cpu_latency_ratio", 9) <= 1 and entry["size_ratio"] <= 0.35,
            plugin=json.loads((run / "metrics.json").read_text()).get("plugin"),
            size_ratio=entry["size_ratio"],
            monitor=entry["monitor"],
            monitored_delta=-entry["monitored_drop"],
            nodes_in_float=entry["nodes_in_float"],
            test_items=entry["eval"]["items"],
            latency_batch=entry.get("cpu_latency_batch"),
            verified=entry["verified"],
        )


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
