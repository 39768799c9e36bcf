"""`tl tune PLUGIN`: hyperparameter search; one subcommand per installed plugin, built on
demand (the options of `tl run PLUGIN` fix values for every trial, plus the search's own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .options import run_options

_TUNE_HELP = (
    "Search hyperparameters: an Optuna study (TPE sampler, pruning on the per-epoch validation "
    "metric) whose trials are `tl run` directories under OUT/tune-STUDY/trial-N/. Flags of "
    "`tl run` are fixed for every trial and take their option out of the search space."
)


def tune_options() -> list[click.Option]:
    return [
        click.Option(["--trials"], type=click.IntRange(min=1),
                     help="Trials this process adds to the study (default 20; unlimited "
                     "with --timeout)."),
        click.Option(["--timeout"], type=click.FloatRange(min=0, min_open=True),
                     help="Start no trial after this many seconds."),
        click.Option(["--metric"],
                     help="Validation metric to optimise (default: the plugin's monitor)."),
        click.Option(["--direction"], type=click.Choice(["maximize", "minimize"]),
                     help="Default: the plugin's for its monitor, minimize for losses/errors, "
                     "else maximize."),
        click.Option(["--study"],
                     help="Study name (default PLUGIN-DATANAME); the same name continues it."),
        click.Option(["--storage"],
                     help="Optuna RDB URL (sqlite:///…, postgresql://…) or a journal file "
                     "path (default OUT/tune-STUDY/journal.log)."),
        click.Option(["--space"], type=click.Path(path_type=Path),
                     help="YAML search space replacing the plugin's default."),
        click.Option(["--pruner"], type=click.Choice(["median", "hyperband", "none"]),
                     default="median", show_default=True,
                     help="Stops trials whose per-epoch validation metric lags."),
        click.Option(["--startup-trials"], type=click.IntRange(min=0), default=5,
                     show_default=True,
                     help="Trials sampled at random (and never pruned) before TPE and the "
                     "pruner start."),
        click.Option(["--sampler-seed"], type=click.IntRange(min=0),
                     help="Seed of the sampler (reproducible searches; leave unset when "
                     "several processes share a study)."),
    ]  # fmt: skip


class TuneCommands(click.Group):
    """``tl tune PLUGIN``, only the asked-for plugin imported."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from tl.core.registry import _entry_points

        return sorted(_entry_points())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from tl.core.registry import load_plugin

        return tune_command(load_plugin(name))

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        return args[0], self.get_command(ctx, args[0]), args[1:]


def tune_command(plugin: Any) -> click.Command:
    tune_names = {opt.name for opt in tune_options()}

    def callback(**options: Any) -> None:
        from tl.core.progress import ProgressReporter
        from tl.core.tuning import TuneOptions, tune_plugin

        tune = TuneOptions(verbose=bool(options.pop("verbose", False)),
                           **{k: options.pop(k) for k in list(options) if k in tune_names})  # fmt: skip
        click.echo(str(tune_plugin(plugin, options, tune, ProgressReporter())))

    params = [o for o in run_options(plugin, "run") if o.name not in ("resume", "devices")]
    return click.Command(
        name=plugin.name,
        params=params[:-1] + tune_options() + params[-1:],  # --verbose last
        callback=callback,
        help=f"{_TUNE_HELP} ({plugin.description})",
    )


tune_group = TuneCommands(name="tune", help="Search hyperparameters (Optuna); best model → ONNX.")
