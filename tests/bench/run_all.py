"""Run every benchmark with small sizes and print one table; exit 1 when a target is missed.

    python tests/bench/run_all.py [--only NAME[,NAME]] [--skip NAME[,NAME]] [--full]

Each bench module has ``main(argv) -> dict`` returning ``{"name", "ours", "baseline",
"ratio", "target", "ok", ...}`` (see ``_common.result``); this imports the module, calls
``main`` with the small arguments below (``--full``: the modules' own defaults / ``--full``)
and tabulates. A bench whose plugin is not installed is listed as skipped; one that crashes
counts as missed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

# (module, small argv, full argv, plugin it needs)
BENCHES: list[tuple[str, list[str], list[str], str | None]] = [
    ("trainer_overhead", ["--epochs", "2", "--n", "256", "--repeats", "3"], [], None),
    ("cached_linear", ["--n", "256"], [], None),
    ("trainer_vs_loop", ["--rows", "32-aug,96", "--repeats", "2"], [], "tl_medical"),
    ("loader_throughput", ["--n", "256", "--steps", "4"], [], None),
    ("onnx_vs_torch", [], [], None),
    ("predict_memory", ["--n", "2000"], [], "tl_medical"),
    ("fraud_latency", [], ["--full"], "tl_fraud"),
    ("recsys_scale", [], ["--full"], "tl_recsys"),
    ("driving_speed", [], ["--full"], "tl_driving"),
    ("gpu_check", [], [], None),
]


def run_one(module_name: str, argv: list[str]) -> dict[str, Any]:
    module = importlib.import_module(module_name)
    started = time.perf_counter()
    record = dict(module.main(argv))
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def table(rows: list[dict[str, Any]]) -> str:
    columns = ["name", "ours", "baseline", "ratio", "target", "unit", "ok", "seconds"]
    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="")
    parser.add_argument("--skip", default="")
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args(argv)
    only = {n for n in args.only.split(",") if n}
    skip = {n for n in args.skip.split(",") if n}
    rows: list[dict[str, Any]] = []
    for name, small, full, needs in BENCHES:
        if (only and name not in only) or name in skip:
            continue
        if needs and importlib.util.find_spec(needs) is None:
            rows.append({"name": name, "ok": "skipped", "target": f"needs {needs}"})
            continue
        print(f"--- {name}", file=sys.stderr, flush=True)
        try:
            rows.append(run_one(name, full if args.full else small))
        except (Exception, SystemExit) as exc:
            traceback.print_exc()
            rows.append({"name": name, "ok": False, "target": f"crashed: {exc!r}"[:60]})
    print(table(rows))
    missed = [r["name"] for r in rows if r.get("ok") is False]
    if missed:
        print(f"missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
