"""Shared click options of `tl run`, `tl pretrain`, `tl predict` and `tl evaluate`.

Every run option defaults to None so that ``--config FILE.yaml`` values apply where no flag
was given (flags win); the real defaults live in `tl.core.run.DEFAULTS`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from tl.core.option_types import FRACTION, NON_NEGATIVE, OPEN_FRACTION, POSITIVE, FiniteRange


def run_options(action: str = "run") -> list[click.Option]:
    opts = [
        click.Option(["--data"], type=click.Path(path_type=Path), help="Dataset folder or file."),
        click.Option(["--backbone"], help="Any timm model name (default: the plugin's)."),
        click.Option(
            ["--weights"],
            help="hub | none | PATH (.safetensors/.pth, a run dir, a `tl pretrain` output). Default hub.",
        ),
        click.Option(["--epochs"], type=click.IntRange(min=1), help="Maximum epochs (default 10)."),
        click.Option(["--batch-size"], type=click.IntRange(min=1), help="Batch size (default 32)."),
        click.Option(["--lr"], type=POSITIVE, help="Peak learning rate (default 1e-3)."),
        click.Option(
            ["--weight-decay"], type=NON_NEGATIVE, help="AdamW weight decay (default 0.05)."
        ),
        click.Option(
            ["--optimizer"], type=click.Choice(["adamw", "sgd"]), help="Optimizer (default adamw)."
        ),
        click.Option(
            ["--warmup"], type=FRACTION, help="Warmup fraction of all steps (default 0.1)."
        ),
        click.Option(
            ["--grad-accum"],
            type=click.IntRange(min=1),
            help="Gradient accumulation steps (default 1).",
        ),
        click.Option(
            ["--patience"],
            type=click.IntRange(min=0),
            help="Early stopping patience in epochs; 0 disables (default 5).",
        ),
        click.Option(
            ["--seed"], type=click.IntRange(0, 2**32 - 1), help="Random seed (default 0)."
        ),
        click.Option(
            ["--device"], type=click.Choice(["auto", "cpu", "cuda"]), help="Device (default auto)."
        ),
        click.Option(
            ["--num-workers"],
            type=click.IntRange(min=0),
            help="DataLoader worker processes (default 0).",
        ),
        click.Option(["--compile/--no-compile"], default=None, help="torch.compile the model."),
        click.Option(
            ["--out"],
            type=click.Path(path_type=Path),
            help="Parent folder of run directories (default runs/).",
        ),
        click.Option(
            ["--config"],
            type=click.Path(path_type=Path),
            help="YAML file with the same keys as the flags; flags win.",
        ),
        click.Option(["--verbose"], is_flag=True, help="Show tracebacks on errors."),
    ]
    if action == "run":
        opts[3:3] = [
            click.Option(
                ["--strategy"],
                help="linear | partial:N | full | gradual | llrd | lora | prompt | prototypes "
                "(default full).",
            ),
            click.Option(
                ["--layer-decay"],
                type=FiniteRange(0, 1, min_open=True),
                help="LR decay per stage for llrd (default 0.75).",
            ),
            click.Option(
                ["--unfreeze-every"],
                type=click.IntRange(min=1),
                help="gradual: epochs between unfreezing stages (default 1).",
            ),
            click.Option(
                ["--label-smoothing"], type=OPEN_FRACTION, help="Label smoothing (default 0)."
            ),
            click.Option(
                ["--dropout"], type=OPEN_FRACTION, help="Dropout before the head (default 0)."
            ),
            click.Option(
                ["--lora-rank"], type=click.IntRange(min=1), help="lora: adapter rank (default 8)."
            ),
            click.Option(["--lora-alpha"], type=POSITIVE, help="lora: scaling alpha (default 16)."),
            click.Option(
                ["--lora-targets"],
                help="lora: comma list of module-name suffixes/regexes (default: ViT "
                "qkv,attn.proj,fc1,fc2; other backbones every conv/linear layer).",
            ),
            click.Option(
                ["--prompt-tokens"],
                type=click.IntRange(min=1),
                help="prompt: prompt tokens per layer (default 10).",
            ),
            click.Option(
                ["--prompt-depth"],
                type=click.Choice(["shallow", "deep"]),
                help="prompt: at the input only, or new prompts at every block (default shallow).",
            ),
            click.Option(
                ["--shots"],
                type=click.IntRange(min=1),
                help="prototypes: training images per class (default: all).",
            ),
        ]
        opts += [
            click.Option(
                ["--resume"],
                type=click.Path(path_type=Path),
                help="Continue a killed run in RUN_DIR.",
            ),
            click.Option(
                ["--compare-scratch/--no-compare-scratch"],
                default=None,
                help="Also train from random init and report the transfer gain.",
            ),
            click.Option(
                ["--skip-bad/--no-skip-bad"],
                default=None,
                help="Skip (and count) corrupt items instead of failing.",
            ),
            click.Option(
                ["--adversarial"],
                type=click.Choice(["fgsm", "pgd"]),
                help="Image classifiers: adversarial training; test accuracy under this attack "
                "for this model and a plainly trained one.",
            ),
            click.Option(
                ["--epsilon"],
                type=FiniteRange(0, 1, min_open=True),
                help="Attack budget on the [0, 1] pixel scale (default 2/255 ≈ 0.0078).",
            ),
            click.Option(
                ["--pgd-steps"], type=click.IntRange(min=1), help="PGD steps (default 5)."
            ),
            click.Option(
                ["--adversarial-mix"],
                type=FRACTION,
                help="Weight of the adversarial loss; the rest is clean loss (default 0.5).",
            ),
            click.Option(
                ["--adversarial-plain/--no-adversarial-plain"],
                default=None,
                help="Also train without attacks to compare robustness (default on).",
            ),
            click.Option(
                ["--cache-features"],
                type=click.Choice(["auto", "on", "off"]),
                help="Train a frozen backbone's head on features computed once "
                "(no augmentation); auto = when the backbone is fully frozen (default auto).",
            ),
            click.Option(
                ["--devices"],
                type=click.IntRange(min=1),
                help="Train on N local GPUs (or N CPU processes) with DDP; launches torchrun.",
            ),
        ]
    return opts


def predict_like_options(with_out: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = click.option("--verbose", is_flag=True, help="Show tracebacks on errors.")(fn)
        fn = click.option(
            "--batch-size", type=click.IntRange(min=1), default=64, show_default=True
        )(fn)
        fn = click.option(
            "--device",
            type=click.Choice(["auto", "cpu", "cuda"]),
            default="auto",
            show_default=True,
        )(fn)
        fn = click.option("--skip-bad", is_flag=True, help="Skip (and count) unreadable items.")(fn)
        fn = click.option(
            "--out",
            type=click.Path(path_type=Path),
            help="Output file (.csv, .json, .parquet)"
            if with_out
            else "Also write the metrics JSON here.",
        )(fn)
        fn = click.option(
            "--data", type=click.Path(path_type=Path), required=True, help="Input data."
        )(fn)
        return fn

    return decorate
