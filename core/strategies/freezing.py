"""Freezing strategies: linear, partial:N, full, gradual, llrd and auto.

*linear* trains the head only, *partial:N* also the last N backbone stages, *full*
everything. *gradual* starts as linear and unfreezes one more stage (from the top) every
``unfreeze_every`` epochs. *llrd* (layer-wise learning-rate decay) trains everything, stage
``i`` of ``n`` at ``lr · layer_decay^(n - i)``. *auto*, the default for pretrained weights, is
gradual unfreezing whose early stopping waits until the whole model has trained for two
epochs: on few labels a noisy validation split otherwise stops it while the lower stages
are still frozen. It was chosen by `tests/bench/transfer_recipes.py` (three few-label
proxy tasks, three seeds), where it matched or beat full, llrd and LP-FT (a linear probe
for a fifth of the epochs, then everything).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..errors import ConfigError
from .base import StrategyPlan, backbone_stages, param_groups
from .registry import parse_strategy, register_strategy, setting


class GradualPlan(StrategyPlan):
    """One more backbone stage trains every ``unfreeze_every`` epochs."""

    def stages_trainable_at(self, epoch: int) -> int:
        return min(self.n_stages, epoch // max(1, self.unfreeze_every))


def freezing_plan(
    model: nn.Module,
    options: Mapping[str, Any],
    name: str,
    trainable: int | None,
    *,
    layer_decay: float = 1.0,
    plan_type: type[StrategyPlan] = StrategyPlan,
) -> StrategyPlan:
    """A plan over the backbone's stages: the top ``trainable`` ones (None: all) train from
    epoch 0; stage ``i`` of ``n`` learns at ``lr · backbone_lr_scale · layer_decay^(n - i)``."""
    lr = float(options["lr"])
    weight_decay = float(setting(options, "weight_decay", 0.0))
    scale = float(setting(options, "backbone_lr_scale", 1.0))
    stages = backbone_stages(model)
    in_backbone = {n for stage in stages for n in stage}
    named = dict(model.named_parameters())
    head = [n for n in named if n not in in_backbone]
    groups: list[dict[str, Any]] = []
    for index, stage in enumerate(stages):
        stage_lr = lr * scale * layer_decay ** (len(stages) - index)
        groups += param_groups(f"stage{index}", stage, named, stage_lr, weight_decay)
    groups += param_groups("head", head, named, lr, weight_decay)
    plan = plan_type(
        name=name,
        stages=stages,
        head=head,
        param_groups=[g for g in groups if g["params"]],
        trainable_stages=len(stages) if trainable is None else trainable,
        unfreeze_every=int(setting(options, "unfreeze_every", 1)),
    )
    plan.apply(model, 0)
    return plan


@register_strategy("linear")
def build_linear(model: nn.Module, options: Mapping[str, Any]) -> StrategyPlan:
    return freezing_plan(model, options, "linear", 0)


@register_strategy("partial", argument="N")
def build_partial(model: nn.Module, options: Mapping[str, Any]) -> StrategyPlan:
    _, n = parse_strategy(options.get("strategy"))
    n_stages = len(backbone_stages(model))
    if n is None or n > n_stages:
        raise ConfigError(
            f"partial:{n} asks for more stages than the backbone has ({n_stages})",
            "--strategy",
            f"use partial:N with 0 ≤ N ≤ {n_stages}",
        )
    return freezing_plan(model, options, "partial", n)


@register_strategy("full")
def build_full(model: nn.Module, options: Mapping[str, Any]) -> StrategyPlan:
    return freezing_plan(model, options, "full", None)


@register_strategy("gradual")
def build_gradual(model: nn.Module, options: Mapping[str, Any]) -> StrategyPlan:
    return freezing_plan(model, options, "gradual", 0, plan_type=GradualPlan)


@register_strategy("llrd")
def build_llrd(model: nn.Module, options: Mapping[str, Any]) -> StrategyPlan:
    decay = float(setting(options, "layer_decay", 0.75))
    return freezing_plan(model, options, "llrd", None, layer_decay=decay)


@register_strategy("auto")
def build_auto(model: nn.Module, options: Mapping[str, Any]) -> StrategyPlan:
    plan = freezing_plan(model, options, "auto", 0, plan_type=GradualPlan)
    plan.min_epochs = plan.n_stages * max(1, plan.unfreeze_every) + 2
    return plan
