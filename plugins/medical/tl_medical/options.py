"""Options of `tl run medical`, `tl pretrain medical` and `tl predict/evaluate` on its models."""

from __future__ import annotations

from dataclasses import dataclass

import click
from tl.core import POSITIVE, FiniteRange, option

SPLIT = FiniteRange(0, 1, min_open=True, max_open=True)


@dataclass(frozen=True)
class MedicalOptions:
    window: str | None = option(
        None, "DICOM window CENTER,WIDTH (default: the file's VOI LUT / window)."
    )
    image_size: int = option(
        224, "Square input size in pixels (use the same for pretraining and fine-tuning).",
        type=click.IntRange(min=16)
    )  # fmt: skip
    channels: str | None = option(
        None, "Force 1 or 3 input channels (default: 1 for grayscale data).",
        type=click.Choice(["1", "3"])
    )  # fmt: skip
    target_sensitivity: float | None = option(
        None, "Binary: pick the threshold reaching this sensitivity on validation "
        "(default: Youden's J).", type=FiniteRange(0, 1, min_open=True),
    )  # fmt: skip
    val_fraction: float = option(
        0.15, "Validation fraction when the data has no split column.", type=SPLIT
    )
    test_fraction: float = option(
        0.2, "Test fraction when the data has no split column.", type=SPLIT
    )
    augment: bool = option(True, "Training augmentation.", flag=True)


@dataclass(frozen=True)
class MedicalPretrainOptions:
    method: str = option(
        "simclr", "simclr: self-supervised on unlabelled images (any folder layout); "
        "supervised: a labelled folder/manifest.", type=click.Choice(["simclr", "supervised"])
    )  # fmt: skip
    window: str | None = option(None, "DICOM window CENTER,WIDTH.")
    image_size: int = option(
        224, "Square input size; use the same for `tl run`.", type=click.IntRange(min=16)
    )  # fmt: skip
    channels: str | None = option(None, "Force 1 or 3 channels.", type=click.Choice(["1", "3"]))
    ssl_temperature: float = option(0.2, "NT-Xent temperature.", type=POSITIVE)
    val_fraction: float = option(
        0.1, "Held-out fraction for the loss curve.", type=FiniteRange(0, 1, max_open=True)
    )  # fmt: skip


@dataclass(frozen=True)
class MedicalPredictOptions:
    window: str | None = option(None, "DICOM window CENTER,WIDTH override.")
