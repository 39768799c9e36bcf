"""Training strategies as a registry: which parameters train, at which learning rate, when.

``--strategy`` names a builder registered with `register_strategy`; `build_plan` turns the
run's options into that strategy's `StrategyPlan`, and the plan trains itself
(`StrategyPlan.fit`). Built in: the freezing strategies linear, partial:N, full, gradual and
llrd (`freezing`); ``lora`` (`lora`: peft adapters, merged before export); ``prompt``
(`prompt`: visual prompt tuning of a ViT); ``prototypes`` (`prototypes`: no training, a
head of class means). lora and prompt wrap the frozen backbone, and their plans decide what
a checkpoint holds (`StrategyPlan.checkpoint_state`).
"""

from __future__ import annotations

from . import freezing, lora, prompt, prototypes  # noqa: F401  (they register themselves)
from .base import (
    FitContext,
    StrategyPlan,
    backbone_stages,
    is_multilabel,
    param_groups,
    parameter_counts,
)
from .registry import build_plan, parse_strategy, register_strategy, strategy_names

__all__ = [
    "FitContext",
    "StrategyPlan",
    "backbone_stages",
    "build_plan",
    "is_multilabel",
    "param_groups",
    "parameter_counts",
    "parse_strategy",
    "register_strategy",
    "strategy_names",
]
