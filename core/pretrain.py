"""`tl pretrain`: what a plugin hands the core to pretrain a backbone.

The core trains ``model`` with the same trainer as ``tl run`` and writes
``backbone.safetensors``: every tensor of ``model.state_dict()`` under ``backbone.`` (so the
pretraining model's ``.backbone`` must be built like the fine-tuning model's), with
``metadata`` stored as JSON in the file, where ``Plugin.adapt_weights`` finds it later.

The trainer runs it as the `tl.core.task.Task` of `tl.core.task.pretrain_as_task`: without
``training_step`` the plugin's own trains, without ``predict_step`` validation reports the
training loss (``{"loss": training_step(model, batch)}``), and ``metrics(outputs)`` adds
metrics of its own to that loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PretrainTask:
    model: Any
    train: Any
    val: Any = None
    training_step: Callable[[Any, Any], Any] | None = None
    predict_step: Callable[[Any, Any], Any] | None = None
    metrics: Callable[[list[Any]], dict[str, Any]] | None = None
    collate: Any = None
    monitor: str = "loss"
    monitor_mode: str = "min"
    method: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    #: `TrainConfig` fields this task needs (e.g. ``{"precise_bn_below_steps": 0}``)
    train_overrides: dict[str, Any] = field(default_factory=dict)
