"""Search spaces of `tl tune`: what a trial samples, as plain data.

A space maps option names (those of `tl run PLUGIN`) to a distribution::

    lr: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}
    n_blocks: {type: int, low: 1, high: 4}
    strategy: [linear, full, llrd]                      # a list: one of these values
    layer_decay: {type: float, low: 0.5, high: 0.95, when: {strategy: llrd}}
    epochs: 3                                           # a scalar: fixed for every trial

``when`` samples a parameter only if earlier ones (or the fixed options) have one of the
given values. The defaults come from `tl.core.Plugin.search_space`; ``--space FILE.yaml``
replaces them. The *shape* of a space is checked here (a bad file is a one-line error);
whether a sampled value is valid for the option is checked per trial, with the same types
as flags, so an out-of-range value fails that trial only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import convert_value, did_you_mean, known_options
from ..errors import ConfigError

KINDS = ("float", "int", "categorical")
#: options that say where and how to run, not what to train: never searched
NOT_SEARCHED = frozenset({"data", "out", "track", "device", "num_workers", "skip_bad"})
_KEYS = {"type", "low", "high", "log", "step", "choices", "when"}
SCALAR = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Param:
    """One searched option: its distribution and the condition to sample it."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == "categorical":
            text = "one of " + ", ".join(map(str, self.choices))
        else:
            text = f"{self.kind} in [{self.low:g}, {self.high:g}]" + (" log" if self.log else "")
            text += f" step {self.step:g}" if self.step else ""
        if self.when:
            text += " when " + ", ".join(f"{k} in {list(v)}" for k, v in self.when.items())
        return text


@dataclass(frozen=True)
class SearchSpace:
    """Parameters in sampling order plus the values every trial gets (``fixed``)."""

    params: tuple[Param, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    source: str = "defaults"

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def without(self, names: set[str]) -> SearchSpace:
        """The space with ``names`` (options the user fixed by flags) taken out."""
        kept = tuple(p for p in self.params if p.name not in names)
        fixed = {k: v for k, v in self.fixed.items() if k not in names}
        return SearchSpace(kept, fixed, self.source)

    def sample(self, trial: Any, base: Mapping[str, Any]) -> dict[str, Any]:
        """The trial's values (from an Optuna ``trial``); ``base``: the options a trial has
        when nothing is sampled (conditions on unsampled options read them)."""
        values: dict[str, Any] = dict(self.fixed)
        for param in self.params:
            seen = {**base, **values}
            if any(seen.get(key) not in allowed for key, allowed in param.when.items()):
                continue
            values[param.name] = suggest(trial, param)
        return values

    def baseline(self, base: Mapping[str, Any]) -> dict[str, Any]:
        """The values of ``base`` (the plain run's options) for the parameters they fall
        within, in sampling order: the first trial of a new study trains the default run,
        so that the study's best is never a configuration worse than it on validation."""
        values: dict[str, Any] = {}
        for param in self.params:
            seen = {**base, **self.fixed, **values}
            if any(seen.get(key) not in allowed for key, allowed in param.when.items()):
                continue
            value = base.get(param.name)
            if param.kind == "categorical":
                if value in param.choices:
                    values[param.name] = value
            elif _within(param, value):
                values[param.name] = int(value) if param.kind == "int" else float(value)
        return values

    def as_dict(self) -> dict[str, Any]:
        """The space in the YAML form it was read from (for the report and the tracker)."""
        out: dict[str, Any] = dict(self.fixed)
        for p in self.params:
            spec: dict[str, Any] = {"type": p.kind}
            if p.kind == "categorical":
                spec["choices"] = list(p.choices)
            else:
                spec.update({"low": p.low, "high": p.high})
                if p.log:
                    spec["log"] = True
                if p.step:
                    spec["step"] = p.step
            if p.when:
                spec["when"] = {k: list(v) for k, v in p.when.items()}
            out[p.name] = spec
        return out


def _within(param: Param, value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    whole = param.kind == "float" or float(value).is_integer()
    return whole and param.low <= value <= param.high


def suggest(trial: Any, param: Param) -> Any:
    if param.kind == "categorical":
        return trial.suggest_categorical(param.name, list(param.choices))
    if param.kind == "int":
        step = int(param.step or 1)
        return trial.suggest_int(param.name, int(param.low), int(param.high), step=step,
                                 log=param.log)  # fmt: skip
    return trial.suggest_float(param.name, param.low, param.high, step=param.step, log=param.log)


def parse_space(plugin: Any, raw: Any, where: str = "the plugin's search_space") -> SearchSpace:
    """A space from its plain-data form; raises ConfigError naming the bad entry."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError("the search space must be a non-empty mapping of option: range",
                          where, "e.g. `lr: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}`")  # fmt: skip
    options = known_options(plugin, "run")
    params: list[Param] = []
    fixed: dict[str, Any] = {}
    for key, spec in raw.items():
        name = str(key).replace("-", "_")
        at = f"{where}: {name}"
        if name not in options:
            raise ConfigError(f"'{name}' is not an option of tl run {plugin.name}", where,
                              did_you_mean(name, list(options)))  # fmt: skip
        if name in NOT_SEARCHED:
            raise ConfigError(f"'{name}' cannot be searched", at,
                              f"pass --{name.replace('_', '-')} to tl tune instead")  # fmt: skip
        if isinstance(spec, SCALAR):
            fixed[name] = convert_value(name, spec, options[name], at)
            continue
        param = _param(name, spec, at)
        for cond in param.when:
            if cond not in options:
                raise ConfigError(f"'when' names '{cond}', which is not an option", at,
                                  did_you_mean(cond, list(options)))  # fmt: skip
            if cond in {p.name for p in params} | set(fixed) or cond not in raw:
                continue
            raise ConfigError(f"'when' names '{cond}', which is sampled later", at,
                              f"list {cond} before {name}")  # fmt: skip
        params.append(param)
    return SearchSpace(tuple(params), fixed, where)


def _param(name: str, spec: Any, at: str) -> Param:
    if isinstance(spec, (list, tuple)):
        spec = {"type": "categorical", "choices": list(spec)}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{type(spec).__name__} is not a range", at,
                          "give {type, low, high}, a list of choices, or one value")  # fmt: skip
    unknown = sorted(set(map(str, spec)) - _KEYS)
    if unknown:
        raise ConfigError(f"unknown key '{unknown[0]}'", at,
                          did_you_mean(unknown[0], sorted(_KEYS)))  # fmt: skip
    kind = spec.get("type") or ("categorical" if "choices" in spec else _numeric_kind(spec))
    if kind not in KINDS:
        raise ConfigError(f"unknown type '{kind}'", at, f"use one of {', '.join(KINDS)}")
    when = _when(spec.get("when"), at)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, (list, tuple)) or not choices:
            raise ConfigError("choices must be a non-empty list", at, "e.g. choices: [16, 32]")
        if not all(isinstance(c, SCALAR) for c in choices):
            raise ConfigError("choices must be single values", at, "e.g. choices: [16, 32]")
        return Param(name, kind, choices=tuple(choices), when=when)
    low, high = _number(spec, "low", at), _number(spec, "high", at)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError("log must be true or false", at, "e.g. log: true")
    step = None if spec.get("step") is None else _number(spec, "step", at)
    if low > high:
        raise ConfigError(f"low {low:g} is above high {high:g}", at, "swap them")
    if log and low <= 0:
        raise ConfigError("a log range needs low > 0", at, "raise low, or drop log: true")
    if step is not None and (step <= 0 or log):
        raise ConfigError("step must be positive and cannot go with log", at, "fix step")
    if kind == "int" and not all(float(v).is_integer() for v in (low, high, step or 1)):
        raise ConfigError("an int range needs whole numbers", at, "use type: float")
    return Param(name, kind, float(low), float(high), log, step, when=when)


def _numeric_kind(spec: Mapping[str, Any]) -> str:
    bounds = [spec.get("low"), spec.get("high")]
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in bounds)
    return "int" if ints and not spec.get("log") else "float"


def _number(spec: Mapping[str, Any], key: str, at: str) -> float:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, not {value!r}", at, f"set {key}")
    return float(value)


def _when(raw: Any, at: str) -> dict[str, tuple[Any, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError("'when' must map options to values", at, "e.g. when: {strategy: llrd}")
    out = {}
    for key, allowed in raw.items():
        values = tuple(allowed) if isinstance(allowed, (list, tuple)) else (allowed,)
        out[str(key).replace("-", "_")] = values
    return out


def read_space(plugin: Any, path: Path) -> SearchSpace:
    """``--space FILE.yaml`` (same one-line errors as a bad ``--config`` file)."""
    from ..rundir import read_config

    raw = read_config(Path(path))
    return parse_space(plugin, raw, f"--space {path}")


def checked_values(plugin: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's sampled values through the options' own types (ranges, choices), as a
    ``--config`` value would be: an invalid one raises ConfigError and fails the trial."""
    options = known_options(plugin, "run")
    return {
        k: convert_value(k, v, options[k], f"search space: {k}={v!r}") for k, v in values.items()
    }


__all__ = ["NOT_SEARCHED", "Param", "SearchSpace", "checked_values", "parse_space", "read_space"]
