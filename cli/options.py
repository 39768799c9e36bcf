"""Shared click options of `tl run`, `tl pretrain`, `tl predict` and `tl evaluate`.

Every run option defaults to None so that ``--config FILE.yaml`` values apply where no flag
was given (flags win); the real defaults live in `tl.core.config.RunConfig` and the plugins'
options dataclasses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def run_options(plugin: Any, action: str = "run") -> list[click.Option]:
    """The options of ``tl run PLUGIN`` / ``tl pretrain PLUGIN``: generated from the core's
    `RunConfig` and the plugin's options dataclass (defaults None, so ``--config`` values
    apply where no flag is given), plus the options that are not configuration."""
    from tl.core.config import RunConfig, click_options, plugin_groups, plugin_options_type

    defaults = dict(getattr(plugin, "defaults", {}) or {})
    if not getattr(plugin, "hub_weights", True):
        defaults["weights"] = "none"
    groups = plugin_groups(plugin)
    opts = click_options(RunConfig, action, defaults, groups)
    opts += click_options(plugin_options_type(plugin, action), None, defaults)
    opts.append(
        click.Option(
            ["--config"],
            type=click.Path(path_type=Path),
            help="YAML file with the same keys as the flags (a run's config.yaml reproduces "
            "it); flags win.",
        )
    )
    if action == "run":
        opts += [
            click.Option(
                ["--resume"],
                type=click.Path(path_type=Path),
                help="Continue a killed run in RUN_DIR.",
            ),
            click.Option(
                ["--devices"],
                type=click.IntRange(min=1),
                help="Train on N local GPUs (or N CPU processes) with DDP; launches torchrun.",
            ),
        ]
    opts.append(click.Option(["--verbose"], is_flag=True, help="Show tracebacks on errors."))
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
