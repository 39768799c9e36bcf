"""Options of `tl run fraud`, `tl pretrain fraud` and `tl predict/evaluate` on its models."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click
from tl.core import POSITIVE, FiniteRange, RunConfig, option

SPLIT_FRACTION = FiniteRange(0, 1, min_open=True, max_open=True)


@dataclass(frozen=True)
class FraudTableOptions:
    """What reading and encoding a table takes (shared by run and pretrain)."""

    target: str | None = option(None, "0/1, boolean or two-valued fraud label column.")
    positive: str | None = option(None, "The target value that means fraud (for string labels).")
    time_column: str | None = option(
        None, "Timestamp column: out-of-time split + hour/weekday features."
    )
    group_column: str | None = option(None, "Entity column (e.g. card id) kept within one split.")
    drop: tuple[str, ...] = option(
        (), "Columns to leave out (ids); kept in predictions.", multiple=True
    )
    categorical: tuple[str, ...] = option(
        (), "Force these columns to be categorical.", multiple=True
    )
    numeric: tuple[str, ...] = option((), "Force these columns to be numeric.", multiple=True)
    d_token: int | None = option(
        None, "Token width (default 64, or the pretrained weights').", type=click.IntRange(min=1)
    )
    n_blocks: int | None = option(
        None, "Transformer blocks (default 2, or the pretrained weights').",
        type=click.IntRange(min=1),
    )  # fmt: skip
    n_heads: int | None = option(
        None, "Attention heads (default 4, or the pretrained weights').", type=click.IntRange(min=1)
    )
    val_fraction: float = option(0.15, "Validation fraction.", type=SPLIT_FRACTION)


@dataclass(frozen=True)
class FraudOptions(FraudTableOptions):
    test_fraction: float = option(0.15, "Test fraction.", type=SPLIT_FRACTION)
    loss: str = option(
        "weighted", "Class-weighted BCE, focal loss, or unweighted.",
        type=click.Choice(["weighted", "focal", "plain"]),
    )  # fmt: skip
    cost_fp: float = option(1.0, "Cost of a false alert (threshold choice).", type=POSITIVE)
    cost_fn: float = option(10.0, "Cost of a missed fraud (threshold choice).", type=POSITIVE)
    target_recall: float | None = option(
        None, "Pick the threshold reaching this recall on validation instead of by cost.",
        type=FiniteRange(0, 1, min_open=True),
    )  # fmt: skip


@dataclass(frozen=True)
class FraudPretrainOptions(FraudTableOptions):
    ssl: str = option(
        "mask", "Self-supervised objective (ignored with --target).",
        type=click.Choice(["mask", "scarf", "both"]),
    )  # fmt: skip


@dataclass(frozen=True)
class FraudPredictOptions:
    target: str | None = option(None, "Label column for `tl evaluate` (default: the training one).")
    positive: str | None = option(None, "The target value that means fraud.")


#: the fraud plugin's overrides of core defaults (`Plugin.defaults`)
#: full fine-tuning also with pretrained weights: the recipe the README measured (core's
#: LP-FT default, auto, was studied on image tasks)
DEFAULTS = {"dropout": 0.1, "strategy": "full"}
_TYPES = (FraudOptions, FraudPretrainOptions)


def setting(options: Mapping[str, Any], name: str) -> Any:
    """``options[name]``. A resolved `tl.core.Config` has every option; a plain mapping (tests,
    fuzzers calling `prepare` directly) falls back to the one default of the field."""
    if name in options:
        return options[name]
    if name in DEFAULTS:
        return DEFAULTS[name]
    for cls in (*_TYPES, RunConfig):
        for f in dataclasses.fields(cls):
            if f.name == name:
                return f.default
    raise KeyError(name)
