"""Freezing strategies: which parameters train, at which learning rate, and when.

Every strategy works on a model with ``.backbone`` and ``.head``. The backbone is cut into
ordered *stages* with timm's ``group_matcher(coarse=True)`` when it has one (stem, stage 1,
…), otherwise by its top-level children. Everything outside ``.backbone`` counts as head.

``lora`` (`tl.core.lora`) and ``prompt`` (`tl.core.prompt_tuning`) wrap the frozen backbone
and train only what they add plus the head; their plans also decide what a checkpoint holds
(`StrategyPlan.checkpoint_state`). ``prototypes`` (`tl.core.prototypes`) trains nothing and
has no plan: `tl.core.run` builds its head directly.

The optimizer always receives *all* parameters, grouped by stage; frozen ones simply have
``requires_grad=False`` (no gradient → AdamW/SGD skip them). Gradual unfreezing therefore
only flips flags: param groups and the LR schedule stay the same objects for the whole run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .checkpoints import state_dict_for_saving
from .errors import ConfigError

STRATEGIES = ("linear", "partial:N", "full", "gradual", "llrd", "lora", "prompt", "prototypes")


@dataclass
class StrategyPlan:
    name: str
    stages: list[list[str]]
    head: list[str]
    param_groups: list[dict[str, Any]]
    trainable_stages: int
    unfreeze_every: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    def stages_trainable_at(self, epoch: int) -> int:
        """How many backbone stages (from the top) train in ``epoch`` (0-based)."""
        if self.name != "gradual":
            return self.trainable_stages
        return min(self.n_stages, epoch // max(1, self.unfreeze_every))

    def apply(self, model: nn.Module, epoch: int = 0) -> bool:
        """Set ``requires_grad`` for ``epoch``; True when the trainable set changed."""
        n_top = self.stages_trainable_at(epoch)
        trainable = set(self.head)
        for stage in self.stages[self.n_stages - n_top :]:
            trainable.update(stage)
        changed = False
        for name, param in model.named_parameters():
            want = name in trainable
            if param.requires_grad != want:
                param.requires_grad_(want)
                changed = True
        return changed

    def checkpoint_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The tensors that best/last checkpoints hold: by default the model's state dict.
        Strategies that wrap the backbone store the plain model's names instead, so that
        ``--weights RUN_DIR`` loads into any model of the same architecture."""
        return state_dict_for_saving(model)

    def load_checkpoint_state(
        self, model: nn.Module, state: dict[str, torch.Tensor]
    ) -> tuple[list[str], list[str]]:
        """Inverse of `checkpoint_state` (best-epoch reload, ``--resume``): (missing, unexpected)."""
        missing, unexpected = model.load_state_dict(state, strict=False)
        return list(missing), list(unexpected)

    def finish(self, model: nn.Module) -> None:
        """After training, before evaluation and export (lora merges its adapters here)."""

    def load_finished_state(
        self, model: nn.Module, state: dict[str, torch.Tensor]
    ) -> tuple[list[str], list[str]]:
        """A finished run's checkpoint into the freshly built model, which ends as the run
        evaluated and exported it (`finish` applied): (missing, unexpected)."""
        missing, unexpected = self.load_checkpoint_state(model, state)
        self.finish(model)
        return missing, unexpected

    def train_mode(self, model: nn.Module) -> None:
        """``model.train()``, but fully frozen backbone parts stay in eval mode
        (BatchNorm running statistics and dropout of frozen layers do not change)."""
        model.train()
        backbone = model.backbone
        for module in backbone.modules():
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                module.eval()


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def backbone_stages(model: nn.Module) -> list[list[str]]:
    """Names (as in ``model.named_parameters()``) of backbone parameters, by stage, input first."""
    backbone = model.backbone
    matcher = getattr(backbone, "group_matcher", None)
    groups: list[list[str]] = []
    if callable(matcher):
        from timm.models import group_parameters

        try:
            grouped = group_parameters(backbone, matcher(coarse=True))
            groups = [list(grouped[k]) for k in sorted(grouped)]
        except (TypeError, NotImplementedError):
            groups = []
    if not groups:
        for child_name, child in backbone.named_children():
            names = [f"{child_name}.{n}" for n, _ in child.named_parameters()]
            if names:
                groups.append(names)
        direct = [n for n, _ in backbone.named_parameters(recurse=False)]
        if direct:
            groups.insert(0, direct)
    return [[f"backbone.{n}" for n in group] for group in groups if group]


def parse_strategy(text: str) -> tuple[str, int | None]:
    text = (text or "full").strip().lower()
    match = re.fullmatch(r"partial:(\d+)", text)
    if match:
        return "partial", int(match.group(1))
    if text in ("linear", "full", "gradual", "llrd", "lora", "prompt", "prototypes"):
        return text, None
    raise ConfigError(
        f"unknown strategy '{text}'", "--strategy", f"use one of {', '.join(STRATEGIES)}"
    )


def _is_no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim <= 1 or name.endswith(".bias") or "pos_embed" in name or "token" in name


def build_plan(
    model: nn.Module,
    strategy: str,
    lr: float,
    weight_decay: float,
    layer_decay: float = 0.75,
    unfreeze_every: int = 1,
    backbone_lr_scale: float = 1.0,
    options: dict[str, Any] | None = None,
) -> StrategyPlan:
    """Decide trainable stages and build optimizer param groups for ``strategy``.

    ``options`` (the run's resolved options) carry the lora/prompt settings; those two
    strategies modify ``model.backbone`` in place.
    """
    if not hasattr(model, "backbone") or not hasattr(model, "head"):
        raise ConfigError(
            "the plugin's model has no .backbone/.head", type(model).__name__, "fix the plugin"
        )
    kind, n = parse_strategy(strategy)
    if kind == "lora":
        from .lora import build_lora_plan

        return build_lora_plan(model, lr, weight_decay, options or {})
    if kind == "prompt":
        from .prompt_tuning import build_prompt_plan

        return build_prompt_plan(model, lr, weight_decay, options or {})
    if kind == "prototypes":
        raise ConfigError(
            "strategy 'prototypes' trains no parameters and has no optimizer plan",
            "--strategy prototypes",
            "use tl.core.prototypes.fit_prototypes (tl run does)",
        )
    stages = backbone_stages(model)
    in_backbone = {name for stage in stages for name in stage}
    named = dict(model.named_parameters())
    head = [name for name in named if name not in in_backbone]
    n_stages = len(stages)
    if kind == "partial":
        if n is None or n < 0 or n > n_stages:
            raise ConfigError(
                f"partial:{n} asks for more stages than the backbone has ({n_stages})",
                "--strategy",
                f"use partial:N with 0 ≤ N ≤ {n_stages}",
            )
        trainable = n
    else:
        trainable = {"linear": 0, "full": n_stages, "gradual": 0, "llrd": n_stages}[kind]

    groups: list[dict[str, Any]] = []
    for index, stage in enumerate(stages):
        scale = backbone_lr_scale
        if kind == "llrd":
            scale *= layer_decay ** (n_stages - index)
        groups += _groups_for(f"stage{index}", stage, named, lr * scale, weight_decay)
    groups += _groups_for("head", head, named, lr, weight_decay)
    plan = StrategyPlan(
        name=kind,
        stages=stages,
        head=head,
        param_groups=[g for g in groups if g["params"]],
        trainable_stages=trainable,
        unfreeze_every=unfreeze_every,
    )
    plan.apply(model, 0)
    return plan


def _groups_for(
    label: str, names: list[str], named: dict[str, nn.Parameter], lr: float, weight_decay: float
) -> list[dict[str, Any]]:
    decay = [named[n] for n in names if not _is_no_decay(n, named[n])]
    no_decay = [named[n] for n in names if _is_no_decay(n, named[n])]
    return [
        {"name": f"{label}", "params": decay, "lr": lr, "weight_decay": weight_decay},
        {"name": f"{label}.no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0},
    ]
