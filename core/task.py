"""What the trainer trains: one task protocol for plugins, pretraining and their variants.

A `Task` is a frozen value of three functions and the metric to monitor. `plugin_task` binds
a plugin to its data for `tl run`; `pretrain_as_task` makes one of a plugin's
`tl.core.pretrain.PretrainTask` for `tl pretrain`. Variants (adversarial training,
distillation) are ``dataclasses.replace(task, training_step=...)``: validation, metrics and
monitoring stay the task's own, and no adapter class stands in between.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Task:
    """``training_step(model, batch) -> loss`` (a scalar tensor), ``predict_step(model,
    batch) -> output`` (collected on the CPU for ``metrics``), ``metrics(outputs, split) ->
    dict`` and which of those metrics early stopping and the best checkpoint follow."""

    training_step: Callable[[Any, Any], Any]
    predict_step: Callable[[Any, Any], Any]
    metrics: Callable[[list[Any], str], dict[str, Any]]
    monitor: str = "loss"
    monitor_mode: str = "min"


def plugin_task(plugin: Any, data: Any) -> Task:
    """The task of ``plugin`` (a `tl.core.plugin.Plugin`) bound to ``data`` (its `TLData`)."""
    return Task(
        training_step=plugin.training_step,
        predict_step=plugin.predict_step,
        metrics=lambda outputs, split: plugin.metrics(outputs, data, split),
        monitor=plugin.monitor,
        monitor_mode=plugin.monitor_mode,
    )


def pretrain_as_task(pretrain_task: Any, plugin: Any) -> Task:
    """The task of a `tl.core.pretrain.PretrainTask`, its gaps filled: training with the
    plugin's own ``training_step``, validation reporting the training loss, no metrics
    beyond that loss."""
    training_step = pretrain_task.training_step or plugin.training_step
    predict_step = pretrain_task.predict_step or (
        lambda model, batch: {"loss": training_step(model, batch)}
    )
    metrics = pretrain_task.metrics
    return Task(
        training_step=training_step,
        predict_step=predict_step,
        metrics=lambda outputs, split: dict(metrics(outputs)) if metrics else {},
        monitor=pretrain_task.monitor,
        monitor_mode=pretrain_task.monitor_mode,
    )


def as_task(task: Any) -> Task:
    """``task`` as a `Task`: itself, or any object with the same attributes (duck typing;
    its methods are called as they are looked up now)."""
    if isinstance(task, Task):
        return task
    return Task(
        training_step=task.training_step,
        predict_step=task.predict_step,
        metrics=task.metrics,
        monitor=getattr(task, "monitor", "loss"),
        monitor_mode=getattr(task, "monitor_mode", "min"),
    )


__all__ = ["Task", "as_task", "plugin_task", "pretrain_as_task"]
