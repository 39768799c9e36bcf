"""Value types with ranges for the options of `tl` commands (core and plugins).

Flags are checked by click when parsed, `--config` values by `tl.cli` with the same types,
so an out-of-range value is a one-line usage error and never a crash deep in training.
"""

from __future__ import annotations

import math
from typing import Any

import click


class FiniteRange(click.FloatRange):
    """A float range that also refuses NaN and ±inf (click's range lets NaN through:
    every comparison with NaN is false)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number

    def _describe_range(self) -> str:
        if self.min is None and self.max is None:
            return "finite"
        return super()._describe_range()


POSITIVE = FiniteRange(min=0, min_open=True)
NON_NEGATIVE = FiniteRange(min=0)
FRACTION = FiniteRange(0, 1)
OPEN_FRACTION = FiniteRange(0, 1, max_open=True)
