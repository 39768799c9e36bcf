"""``--strategy lora``: low-rank adapters (peft) on the frozen backbone, merged before export.

The backbone becomes a ``peft.PeftModel``; its base weights stay frozen (their BatchNorm
layers in eval mode), the adapters and the head train. Checkpoints hold the *merged*
weights under the plain model's names — a LoRA run directory is an ordinary ``--weights``
source — plus the adapter tensors (``….lora_A.weight`` / ``….lora_B.weight``), which
resume and the best-epoch reload put back; the frozen base is what the model was built
with, so that restore is exact. `LoraPlan.finish` merges in place (``merge_and_unload``):
evaluation and ONNX export see a plain timm model.

Default targets: a ViT's attention ``qkv``/``proj`` and MLP ``fc1``/``fc2`` layers; every
other backbone's ungrouped convolutions and linear layers (grouped/depthwise convolutions
cannot be merged by peft, so they are never targeted).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..backbones import is_vit
from ..errors import ConfigError
from .base import StrategyPlan, param_groups
from .registry import register_strategy, setting

ADAPTER = "default"
_PEFT_PREFIX = "backbone.base_model.model."
VIT_TARGETS = ("qkv", "attn.proj", "fc1", "fc2")
_SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _matches(name: str, token: str) -> bool:
    if name == token or name.endswith("." + token):
        return True
    try:
        return re.fullmatch(token, name) is not None
    except re.error:
        return False


def _adaptable(module: nn.Module) -> bool:
    return isinstance(module, _SUPPORTED) and getattr(module, "groups", 1) == 1


def resolve_targets(backbone: nn.Module, targets: Any = None) -> list[str]:
    """Full module names (inside ``backbone``) that get adapters.

    ``targets``: None (the architecture's default), or a comma string / list of tokens; a
    token matches a module name that equals it, ends with ``.token``, or fully matches it
    as a regular expression. Only linear and ungrouped convolution layers are adapted.
    """
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    tokens = list(targets) if targets else (list(VIT_TARGETS) if is_vit(backbone) else None)
    names = [
        name
        for name, module in backbone.named_modules()
        if name
        and _adaptable(module)
        and (tokens is None or any(_matches(name, t) for t in tokens))
    ]
    if not names:
        shown = ",".join(tokens) if tokens else "(default)"
        raise ConfigError(
            f"--lora-targets {shown} matches no linear or convolution layer of the backbone",
            "--lora-targets",
            "give module-name suffixes or regexes, e.g. qkv,proj,fc1,fc2 for a ViT "
            "or 'layer[34]\\..*conv\\d' for a ResNet",
        )
    return names


class LoraPlan(StrategyPlan):
    """Adapters + head train; checkpoints hold merged weights plus the adapters."""

    def checkpoint_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        peft_model = model.backbone
        merged = copy.deepcopy(peft_model).merge_and_unload()
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
        state.update({f"backbone.{k}": v for k, v in merged.state_dict().items()})
        for key, value in model.state_dict().items():
            plain = _plain_name(key)
            if plain is not None and ".lora_" in key:
                state[plain] = value
        return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}

    def load_checkpoint_state(
        self, model: nn.Module, state: dict[str, torch.Tensor]
    ) -> tuple[list[str], list[str]]:
        own = model.state_dict()
        fitting, missing, used = {}, [], set()
        for key in own:
            plain = _plain_name(key)
            if plain is None:  # frozen base weight: unchanged since the model was built
                used.add(key.replace(_PEFT_PREFIX, "backbone.").replace(".base_layer.", "."))
                continue
            if plain in state:
                fitting[key] = state[plain]
                used.add(plain)
            else:
                missing.append(plain)
        model.load_state_dict(fitting, strict=False)
        return missing, [k for k in state if k not in used]

    def finish(self, model: nn.Module) -> None:
        model.backbone = model.backbone.merge_and_unload()

    def load_finished_state(
        self, model: nn.Module, state: dict[str, torch.Tensor]
    ) -> tuple[list[str], list[str]]:
        # The checkpoint's merged weights are the finished model (bit for bit what `finish`
        # gave the run); its adapters only serve resume. The frozen base this model was just
        # built with need not be the run's (--weights, seed), so it is not used.
        self.finish(model)
        merged = {k: v for k, v in state.items() if ".lora_" not in k}
        missing, unexpected = model.load_state_dict(merged, strict=False)
        return list(missing), list(unexpected)


def _plain_name(key: str) -> str | None:
    """Checkpoint name of a LoRA model's state-dict key; None for frozen base weights
    (the checkpoint holds those merged, under the plain name)."""
    if not key.startswith(_PEFT_PREFIX):
        return key
    rest = key[len(_PEFT_PREFIX) :]
    if ".base_layer." in rest:
        return None
    return "backbone." + rest.replace(f".{ADAPTER}.", ".")


def add_lora(
    model: nn.Module, rank: int = 8, alpha: float = 16.0, targets: Any = None
) -> list[str]:
    """Freeze ``model.backbone`` and wrap it with peft LoRA adapters; returns the targets."""
    from peft import LoraConfig, get_peft_model

    if int(rank) < 1:
        raise ConfigError("--lora-rank must be at least 1", "--lora-rank", "e.g. --lora-rank 8")
    if not float(alpha) > 0:
        raise ConfigError("--lora-alpha must be positive", "--lora-alpha", "e.g. --lora-alpha 16")
    names = resolve_targets(model.backbone, targets)
    config = LoraConfig(
        r=int(rank), lora_alpha=float(alpha), target_modules=names, lora_dropout=0.0, bias="none"
    )
    # get_peft_model freezes every base parameter and leaves the adapters trainable
    model.backbone = get_peft_model(model.backbone, config, adapter_name=ADAPTER)
    return names


def build_lora_plan(
    model: nn.Module, lr: float, weight_decay: float, options: Mapping[str, Any]
) -> LoraPlan:
    """Wrap ``model.backbone`` with adapters (``lora_rank``/``lora_alpha``/``lora_targets``
    of ``options``) and plan adapters + head at ``lr``."""
    rank = int(setting(options, "lora_rank", 8))
    targets = add_lora(
        model,
        rank=rank,
        alpha=setting(options, "lora_alpha", 16.0),
        targets=options.get("lora_targets"),
    )
    named = dict(model.named_parameters())
    adapters = [n for n in named if n.startswith("backbone.") and ".lora_" in n]
    head = [n for n in named if not n.startswith("backbone.")]
    groups = param_groups("lora", adapters, named, lr, weight_decay)
    groups += param_groups("head", head, named, lr, weight_decay)
    plan = LoraPlan(
        name="lora",
        stages=[],
        head=adapters + head,  # always trainable
        param_groups=[g for g in groups if g["params"]],
        trainable_stages=0,
        notes=[f"LoRA rank {rank} on {len(targets)} layers"],
    )
    plan.apply(model, 0)
    return plan


@register_strategy("lora")
def build(model: nn.Module, options: Mapping[str, Any]) -> LoraPlan:
    return build_lora_plan(
        model, float(options["lr"]), float(setting(options, "weight_decay", 0.0)), options
    )
