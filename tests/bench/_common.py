"""Shared bits of the benchmarks: the result record every bench's ``main()`` returns."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

# `tl predict` in a fresh interpreter that reports its own peak RSS at exit (a child's
# RUSAGE_CHILDREN would also count helper processes forked from this, larger, process);
# VmHWM (this address space's high-water mark), not ru_maxrss: Linux carries the parent's
# peak into a vforked child's ru_maxrss across exec
RUNNER = """
import resource, sys
from tl.cli.main import main
try:
    main(sys.argv[1:])
finally:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        with open("/proc/self/status") as fh:
            peak = next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        pass
    print(f"PEAK_RSS_MB={peak:.1f}", file=sys.stderr)
"""


def peak_rss_mb(stderr: str) -> float:
    """The peak RSS a `RUNNER` child printed at exit."""
    return float(stderr.rsplit("PEAK_RSS_MB=", 1)[1].split()[0])


def result(
    name: str, ours: float, baseline: float, ratio: float, target: str, ok: bool, **extra: Any
) -> dict[str, Any]:
    """One benchmark outcome; ``target`` is human-readable (e.g. ``"<= 1.05"``)."""
    record = {
        "name": name,
        "ours": round(ours, 4),
        "baseline": round(baseline, 4),
        "ratio": round(ratio, 3),
        "target": target,
        "ok": bool(ok),
        **extra,
    }
    print(json.dumps(record))
    return record


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """Fastest wall time of ``repeats`` calls: the least noisy estimate on a shared machine."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
