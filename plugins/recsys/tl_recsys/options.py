"""Options of `tl run recsys`, `tl pretrain recsys` and `tl predict/evaluate` on its models.

Each default lives here once. ``d_model``/``layers``/``heads`` default to None: taken from the
``--weights`` file when it has an architecture, else from `ARCH_DEFAULTS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import click
from tl.core import FiniteRange, option

#: encoder sizes when neither a flag nor the ``--weights`` file gives one
ARCH_DEFAULTS = {"d_model": 64, "layers": 2, "heads": 2}


@dataclass(frozen=True)
class RecsysLogOptions:
    """Reading the interaction log and sizing the encoder (shared by run and pretrain)."""

    user_column: str = option("user_id", "User id column.")
    item_column: str = option("item_id", "Item id column.")
    time_column: str | None = option(None, "Timestamp column (default timestamp, if present).")
    rating_column: str | None = option(None, "Rating column (default rating, if present).")
    min_rating: float | None = option(
        None, "Keep interactions rated at least this.", type=FiniteRange()
    )
    max_len: int = option(50, "Longest history the encoder reads.", type=click.IntRange(min=1))
    d_model: int | None = option(
        None, "Embedding width (default: the weights', else 64).", type=click.IntRange(min=1)
    )
    layers: int | None = option(
        None, "Transformer blocks (default: the weights', else 2).", type=click.IntRange(min=1)
    )
    heads: int | None = option(
        None, "Attention heads (default: the weights', else 2).", type=click.IntRange(min=1)
    )
    loss: str = option(
        "auto", "Full softmax over the catalogue, or sampled softmax (auto: sampled above 20k "
        "items).", type=click.Choice(["auto", "full", "sampled"]),
    )  # fmt: skip
    negatives: int = option(
        256, "Negatives per batch for --loss sampled.", type=click.IntRange(min=1)
    )


@dataclass(frozen=True)
class RecsysOptions(RecsysLogOptions):
    first_k: int | None = option(
        None, "Use only each user's first K interactions (adapting to new users).",
        type=click.IntRange(min=1),
    )  # fmt: skip
    top_k: int = option(100, "Items the ONNX model returns.", type=click.IntRange(min=1))


@dataclass(frozen=True)
class RecsysPredictOptions:
    top_k: int = option(10, "Recommendations per user.", type=click.IntRange(min=1))
    user_column: str = option("user_id", "User id column.")
    item_column: str = option("item_id", "Item id column.")
    time_column: str | None = option(None, "Timestamp column (default timestamp, if present).")
