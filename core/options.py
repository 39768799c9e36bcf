"""Options as dataclass fields: `option` makes a field that is also a command-line option,
`click_options` turns a dataclass of them into click options. No torch, no plugin."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import click

_META = "tl_option"
COMMANDS = ("run", "pretrain")
#: optional groups of core options; a plugin lists those that work for its models
#: (`Plugin.option_groups`): the strategies lora, prompt and prototypes with their settings,
#: classifier attacks, label smoothing, dropout before the head, BatchNorm re-estimation
#: (models with BatchNorm) and feature caching (models with a ``features``/``head`` split)
OPTION_GROUPS = frozenset(
    {
        "lora",
        "prompt",
        "prototypes",
        "adversarial",
        "label_smoothing",
        "dropout",
        "batchnorm",
        "feature_cache",
    }
)


@dataclass(frozen=True)
class OptionSpec:
    """How a config field appears on the command line; ``help`` may depend on the plugin's
    option groups (a callable of them)."""

    help: str | Callable[[frozenset[str]], str]
    type: Any = None
    flag: bool = False
    multiple: bool = False
    commands: tuple[str, ...] = ("run",)
    #: the capability a plugin must declare (`Plugin.option_groups`) to offer the option
    group: str | None = None


def option(
    default: Any = None,
    help: str | Callable[[frozenset[str]], str] = "",
    *,
    type: Any = None,
    flag: bool = False,
    multiple: bool = False,
    commands: tuple[str, ...] = ("run",),
    group: str | None = None,
) -> Any:
    """A dataclass field that is also a command-line option (``--field-name``); ``group``
    names the plugin capability it needs (e.g. "prompt": only plugins whose models can take
    visual prompts offer ``--prompt-tokens``)."""
    if multiple and default is None:
        default = ()
    spec = OptionSpec(help, type, flag, multiple, tuple(commands), group)
    return field(default=default, metadata={_META: spec})


def option_fields(
    cls: type | None, command: str | None = None, groups: Any = None
) -> list[dataclasses.Field]:
    """The option fields of dataclass ``cls`` (those of ``command`` only, when given; only
    those whose group is in ``groups``, when given)."""
    if cls is None:
        return []
    found = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_META)
        if spec is None or (command is not None and command not in spec.commands):
            continue
        if groups is not None and spec.group is not None and spec.group not in groups:
            continue
        found.append(f)
    return found


def plugin_groups(plugin: Any) -> frozenset[str]:
    """The optional core option groups ``plugin`` offers (all, unless it says otherwise)."""
    return frozenset(getattr(plugin, "option_groups", OPTION_GROUPS))


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _shown_default(value: Any) -> str | None:
    if value is None or value == () or value is False:
        return None
    if value is True:
        return "on"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def click_options(
    cls: type | None,
    command: str | None = None,
    defaults: Mapping[str, Any] | None = None,
    groups: Any = None,
) -> list[click.Option]:
    """Click options for the fields of ``cls`` (those of ``command`` only, when given; a
    plugin's dataclasses belong to one command each); every default is None (flags win over
    ``--config`` only when given) and the help names the real default."""
    options = []
    for f in option_fields(cls, command, groups):
        spec: OptionSpec = f.metadata[_META]
        default = (defaults or {}).get(f.name, f.default)
        shown = _shown_default(default)
        help_text = spec.help
        if callable(help_text):
            help_text = help_text(frozenset(OPTION_GROUPS if groups is None else groups))
        text = help_text.rstrip(".") + (f" (default {shown})." if shown else ".")
        name = flag_name(f.name)
        if spec.flag:
            decls = [f"{name}/--no-{name[2:]}"]
            options.append(click.Option(decls, default=None, help=text))
        else:
            options.append(
                click.Option(
                    [name],
                    type=spec.type,
                    multiple=spec.multiple,
                    default=None,
                    help=text,
                    metavar=_metavar(spec),
                )
            )
    return options


def _metavar(spec: OptionSpec) -> str | None:
    if isinstance(spec.type, click.Choice):
        return "[" + "|".join(spec.type.choices) + "]"
    if isinstance(spec.type, (click.IntRange, type(int))) or spec.type is int:
        return "INTEGER"
    if isinstance(spec.type, click.FloatRange) or spec.type is float:
        return "NUMBER"
    return None
