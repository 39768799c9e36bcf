"""Typed configuration: every option of `tl run` / `tl pretrain` is a dataclass field.

The core's options are `RunConfig`; each plugin declares its own dataclass
(`Plugin.options_type`, `pretrain_options_type`, `predict_options_type`) with fields made by
`option`. Click options are generated from those fields (default None, so a `--config` value
applies where no flag was given), and `resolve_config` applies the defaults once, in this
order: dataclass defaults < `Plugin.defaults` < `--config` file < flags. A key that is no
option is an error with a did-you-mean hint, for a flag and for a config key alike.

Imports no torch: the CLI builds its commands from here before anything trains.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click

from .errors import ConfigError
from .options import (
    _META,
    OPTION_GROUPS,
    OptionSpec,
    click_options,
    flag_name,
    option,
    option_fields,
    plugin_groups,
)
from .run_options import RunConfig


class Config(Mapping[str, Any]):
    """A resolved, read-only configuration: the core's `RunConfig` (``.core``) and the
    plugin's options dataclass (``.plugin``), also readable as one mapping of all values."""

    def __init__(
        self, core: RunConfig, plugin: Any = None, command: str = "run", groups: Any = None
    ) -> None:
        self.core = core
        self.plugin = plugin
        self.command = command
        self.groups = OPTION_GROUPS if groups is None else frozenset(groups)
        values = dataclasses.asdict(core)
        if plugin is not None:
            values.update(dataclasses.asdict(plugin))
        self._values = values

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Config({self._values!r})"

    def replace(self, **changes: Any) -> Config:
        """A copy with some values changed (a variant: scratch, plain, student …)."""
        core_names = {f.name for f in dataclasses.fields(self.core)}
        core_changes = {k: v for k, v in changes.items() if k in core_names}
        plugin_changes = {k: v for k, v in changes.items() if k not in core_names}
        if plugin_changes and self.plugin is None:
            raise KeyError(f"unknown options {sorted(plugin_changes)}")
        plugin = (
            dataclasses.replace(self.plugin, **plugin_changes) if plugin_changes else self.plugin
        )
        core = dataclasses.replace(self.core, **core_changes)
        return Config(core, plugin, self.command, self.groups)

    def to_dict(self) -> dict[str, Any]:
        """The values of this command's options, as config.yaml records them."""
        names = [f.name for f in option_fields(RunConfig, self.command, self.groups)]
        names += [f.name for f in option_fields(type(self.plugin))] if self.plugin else []
        return {name: _plain(self._values[name]) for name in names}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value


def plugin_options_type(plugin: Any, command: str) -> type | None:
    attr = "options_type" if command == "run" else "pretrain_options_type"
    return getattr(plugin, attr, None)


def known_options(plugin: Any, command: str) -> dict[str, dataclasses.Field]:
    """Every option of ``tl <command> <plugin>`` by name, core and plugin; a plugin field that
    shadows a core one is a plugin bug."""
    core = {f.name: f for f in option_fields(RunConfig, command, plugin_groups(plugin))}
    own = {f.name: f for f in option_fields(plugin_options_type(plugin, command))}
    clash = sorted(set(core) & set(own))
    if clash:
        from .errors import PluginError

        raise PluginError(
            f"plugin options {clash} shadow core options",
            plugin.name,
            "rename them in the plugin's options dataclass",
        )
    return {**core, **own}


def did_you_mean(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else "see --help for the options"


def convert_value(key: str, value: Any, f: dataclasses.Field, where: Any) -> Any:
    """A config-file value checked and converted by the field's click type."""
    spec: OptionSpec = f.metadata[_META]
    if value is None:
        return None
    try:
        if spec.flag:
            if not isinstance(value, bool):
                raise click.BadParameter(f"{value!r} is not true or false")
            return value
        if spec.multiple:
            items = value if isinstance(value, (list, tuple)) else [value]
            return tuple(_convert(spec.type, v) for v in items)
        if isinstance(value, (list, dict)):
            raise click.BadParameter(f"{value!r} is not a single value")
        return _convert(spec.type, value)
    except click.BadParameter as exc:
        raise ConfigError(
            f"bad value for {key}: {exc.message.rstrip('.')}", where, f"fix {key} in the file"
        ) from None


def _convert(kind: Any, value: Any) -> Any:
    if kind is None:
        if isinstance(value, float) and not math.isfinite(value):
            raise click.BadParameter(f"{value!r} is not a finite number")
        return value if isinstance(value, str) else str(value)
    param_type = click.types.convert_type(kind)
    return param_type.convert(value, None, None)


def resolve_config(
    plugin: Any,
    flags: Mapping[str, Any],
    config_file: Path | None = None,
    command: str = "run",
    saved: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults < plugin defaults < ``config_file`` (or a resumed run's ``saved`` config) <
    ``flags``; then the data path, backbone and weights normalised. Raises ConfigError."""
    from .rundir import read_config

    fields = known_options(plugin, command)
    values: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    values.update({name: f.default for name, f in fields.items()})
    if not getattr(plugin, "hub_weights", True):
        values["weights"] = "none"
    for key, value in dict(getattr(plugin, "defaults", {}) or {}).items():
        if key not in values:
            from .errors import PluginError

            raise PluginError(
                f"Plugin.defaults names an unknown option '{key}'", plugin.name, "fix the plugin"
            )
        values[key] = value
    if saved is not None or config_file is not None:
        where = config_file if config_file is not None else "the run's config.yaml"
        raw = dict(saved) if saved is not None else read_config(Path(config_file))
        values.update(_file_values(plugin, raw, fields, where))
    for key, value in flags.items():
        if value is None or (isinstance(value, tuple) and not value):
            continue
        if key not in fields:
            raise ConfigError(
                f"unknown option '{flag_name(key)}'",
                f"tl {command} {plugin.name}",
                did_you_mean(flag_name(key), [flag_name(n) for n in fields]),
            )
        values[key] = value
    values = _normalise(plugin, values)
    core_names = {f.name for f in dataclasses.fields(RunConfig)}
    core = RunConfig(**{k: v for k, v in values.items() if k in core_names})
    own_type = plugin_options_type(plugin, command)
    own = None
    if own_type is not None:
        own = own_type(**{f.name: values[f.name] for f in option_fields(own_type)})
    return Config(core, own, command, plugin_groups(plugin))


def _file_values(
    plugin: Any, raw: dict[str, Any], fields: dict[str, dataclasses.Field], where: Any
) -> dict[str, Any]:
    source_plugin = raw.pop("plugin", None)
    if source_plugin is not None and source_plugin != plugin.name:
        raise ConfigError(
            f"the config is for the {source_plugin} plugin, not {plugin.name}",
            where,
            f"use `tl run {source_plugin} --config {where}`, or remove its plugin: line",
        )
    out = {}
    core_fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    for key, value in raw.items():
        if key not in fields and key in core_fields:
            if value is None or value == core_fields[key].default:
                continue  # an older config.yaml recorded options the plugin does not offer
            raise ConfigError(
                f"'{key}' does not apply to {plugin.name} models",
                where,
                f"remove {key}: from the config file",
            )
        if key not in fields:
            raise ConfigError(
                f"unknown key '{key}' in the config file", where, did_you_mean(key, list(fields))
            )
        out[key] = convert_value(key, value, fields[key], where)
    return out


def _normalise(plugin: Any, values: dict[str, Any]) -> dict[str, Any]:
    values["backbone"] = values.get("backbone") or plugin.default_backbone
    if not values.get("data"):
        raise ConfigError("no data given", "--data", "pass --data PATH (or data: in --config)")
    values["data"] = str(Path(values["data"]).expanduser().resolve())
    weights = str(values["weights"])
    if weights == "hub" and not getattr(plugin, "hub_weights", True):
        raise ConfigError(
            f"{plugin.name} models are not timm models: there are no hub weights",
            "--weights hub",
            "use --weights none, or a run directory / `tl pretrain` output / .safetensors file",
        )
    if weights not in ("hub", "none"):
        values["weights"] = str(Path(weights).expanduser().resolve())
    values["out"] = str(values["out"])
    return values


__all__ = [
    "Config",
    "OptionSpec",
    "RunConfig",
    "click_options",
    "option",
    "option_fields",
    "resolve_config",
]
