"""Shared helpers for the fuzz tests: every case ends in a result or a one-line `TLError`."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from tl.core.errors import TLError

# fast, bounded, reproducible: CI time matters more than depth here (derandomize: the same
# examples every run; a new crash found locally becomes a regression case, not flakiness).
# A deeper local hunt: TL_FUZZ_EXAMPLES=2000 python -m pytest tests/fuzz (random examples).
DEEP = int(os.environ.get("TL_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=DEEP or 40,
    deadline=None,
    derandomize=not DEEP,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def result_or_tl_error(fn: Callable[[], Any]) -> tuple[Any, TLError | None]:
    """``fn()`` → (result, None), or (None, error) for a `TLError` with a one-line message.

    Any other exception propagates and fails the test (that is the point)."""
    try:
        return fn(), None
    except TLError as exc:
        line = exc.line()
        assert line.startswith("error: ") and "\n" not in line, line
        return None, exc
