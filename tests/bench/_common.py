"""Shared bits of the benchmarks: the result record every bench's ``main()`` returns."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any


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
