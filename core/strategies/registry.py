"""The strategy registry: ``--strategy NAME`` → a builder ``(model, options) -> StrategyPlan``.

Strategy modules register themselves on import (``@register_strategy("lora")``); the
package imports the built-in ones, so `build_plan` knows them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import ConfigError
from .base import StrategyPlan

Builder = Callable[[nn.Module, Mapping[str, Any]], StrategyPlan]


@dataclass(frozen=True)
class _Entry:
    build: Builder
    argument: str | None  # the placeholder of ``name:N`` strategies, e.g. "N"


_REGISTRY: dict[str, _Entry] = {}


def register_strategy(name: str, *, argument: str | None = None) -> Callable[[Builder], Builder]:
    """Register the decorated builder as ``--strategy name``.

    ``argument`` (e.g. ``"N"``): the strategy is written ``name:N`` with a non-negative
    integer, which the builder reads with `parse_strategy`. The builder receives the model
    and the run's options and returns the model's plan (it may modify ``model.backbone``).
    """
    key = name.strip().lower()

    def decorator(build: Builder) -> Builder:
        known = _REGISTRY.get(key)
        if known is not None and _qualified(known.build) != _qualified(build):
            raise ValueError(f"strategy {key!r} is already registered by {_qualified(known.build)}")
        _REGISTRY[key] = _Entry(build, argument)
        return build

    return decorator


def _qualified(build: Builder) -> str:
    return f"{build.__module__}.{build.__qualname__}"


def strategy_names() -> list[str]:
    """Registered strategies as written on the command line (``partial:N``), in order."""
    return [f"{key}:{e.argument}" if e.argument else key for key, e in _REGISTRY.items()]


def parse_strategy(text: str | None) -> tuple[str, int | None]:
    """``"partial:2"`` → ``("partial", 2)``, ``"lora"`` → ``("lora", None)``."""
    text = (text or "full").strip().lower()
    name, colon, argument = text.partition(":")
    entry = _REGISTRY.get(name)
    if entry is not None:
        if entry.argument is None and not colon:
            return name, None
        if entry.argument is not None and argument.isdigit():
            return name, int(argument)
    raise ConfigError(
        f"unknown strategy '{text}'", "--strategy", f"use one of {', '.join(strategy_names())}"
    )


def setting(options: Mapping[str, Any], key: str, default: Any) -> Any:
    """``options[key]``, or ``default`` when it is missing or None."""
    value = options.get(key)
    return default if value is None else value


def build_plan(
    model: nn.Module,
    options: Mapping[str, Any] | str,
    lr: float | None = None,
    weight_decay: float | None = None,
    **legacy: Any,
) -> StrategyPlan:
    """The plan of ``options["strategy"]`` for ``model`` (trainable parameters set for
    epoch 0). ``options``: the run's resolved options — strategy, lr, weight_decay,
    layer_decay, unfreeze_every, lora_*, prompt_*, shots ….

    The keyword form ``build_plan(model, "full", lr, weight_decay, layer_decay=…,
    unfreeze_every=…, backbone_lr_scale=…, options={lora/prompt settings})`` still works.
    """
    if isinstance(options, str):
        extra = legacy.pop("options", None) or {}
        settings = {**extra, "strategy": options, "lr": lr, "weight_decay": weight_decay}
        settings.update(legacy)
    elif lr is not None or weight_decay is not None or legacy:
        raise TypeError("build_plan(model, options): lr/weight_decay belong in options")
    else:
        settings = options
    if not hasattr(model, "backbone") or not hasattr(model, "head"):
        raise ConfigError(
            "the plugin's model has no .backbone/.head", type(model).__name__, "fix the plugin"
        )
    kind, _ = parse_strategy(settings.get("strategy"))
    return _REGISTRY[kind].build(model, settings)
