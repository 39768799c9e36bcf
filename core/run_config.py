"""A run's configuration from flags, ``--config`` or a resumed run, and its trainer settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import Config, resolve_config
from .errors import ConfigError
from .run_options import offered_strategies, strategy_group
from .rundir import read_config
from .trainer import TrainConfig


def resolve_run_config(
    plugin: Any, flags: dict[str, Any], resume_dir: Path | str | None = None, command: str = "run"
) -> Config:
    """``flags`` (None = not given; ``config``: a YAML file) resolved for ``plugin``.

    ``--resume RUN_DIR`` reuses that run's own config.yaml (only ``--device`` and
    ``--checkpoint-every`` may change) and must be a run of the same plugin."""
    flags = dict(flags)
    flags.pop("verbose", None)
    config_file = flags.pop("config", None)
    if not resume_dir:
        config = resolve_config(plugin, flags, Path(config_file) if config_file else None, command)
        return _checked(config, command)
    run_dir = Path(resume_dir)
    if not (run_dir / "config.yaml").exists():
        raise ConfigError("not a tl run directory", run_dir, "pass the folder printed by `tl run`")
    saved = read_config(run_dir / "config.yaml")
    source = saved.get("plugin") or _manifest_plugin(run_dir)
    if source and source != plugin.name:
        raise ConfigError(
            f"this is a {source} run, not a {plugin.name} run",
            run_dir,
            f"resume it with `tl run {source} --resume {run_dir}`",
        )
    saved["plugin"] = plugin.name
    changeable = {k: flags.get(k) for k in ("device", "checkpoint_every")}
    return _checked(resolve_config(plugin, changeable, None, command, saved=saved), command)


def _checked(config: Config, command: str) -> Config:
    """Refuse, before any data loads, what cannot run (``--lr find`` outside `tl run`,
    ``--track mlflow`` without MLflow installed); settle ``--compare-scratch``'s default."""
    if config["lr"] == "find" and command != "run":
        raise ConfigError(
            "--lr find is for `tl run`", f"tl {command}", "give a number, e.g. --lr 1e-3"
        )
    group = strategy_group(str(config.get("strategy") or "full"))
    if group is not None and group not in config.groups:
        raise ConfigError(
            f"--strategy {config['strategy']} does not apply to these models",
            f"tl {command}",
            f"use one of {', '.join(offered_strategies(config.groups))}",
        )
    if config.get("track") == "mlflow":
        from .tracking import require_mlflow

        require_mlflow(load=False)
    if command == "run" and config.get("strategy") is None:
        # gradual unfreezing for transfer, plain fine-tuning from random init (config.yaml)
        config = config.replace(strategy="auto" if str(config["weights"]) != "none" else "full")
    if command == "run" and config.get("compare_scratch") is None:
        # every transfer run says whether it paid; config.yaml records the decision
        config = config.replace(compare_scratch=str(config["weights"]) != "none")
    return config


def _manifest_plugin(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "manifest.json").read_text(encoding="utf-8")).get("plugin")
    except (OSError, ValueError, AttributeError):
        return None


def train_config(config: Config, **overrides: Any) -> TrainConfig:
    """The trainer's settings: the fields of `TrainConfig` that the config holds."""
    fields = TrainConfig.__dataclass_fields__
    values = {k: config[k] for k in fields if k in config and config[k] is not None}
    precise = config.get("precise_bn", "auto")
    if precise != "auto":
        values["precise_bn_below_steps"] = 0 if precise == "off" else 2**62
    values.update(overrides)
    return TrainConfig(**values)


def scratch_config(config: Config) -> Config:
    """``--compare-scratch``'s configuration: the same run from random init; auto's frozen
    first epochs would freeze random weights there, so it trains as full."""
    strategy = "full" if config.get("strategy") == "auto" else config.get("strategy")
    return config.replace(weights="none", strategy=strategy)
