"""``--strategy prompt``: visual prompt tuning (VPT, Jia et al. 2022) of a frozen timm ViT.

``N`` learnable tokens are inserted after the class/register tokens. *shallow*: once, before
the first block; *deep*: every block gets its own ``N`` tokens, replacing the previous
block's outputs at those positions. They are removed again before the final norm, so
pooling (class token, average, attention pool) sees exactly the tokens it would without
prompts. Only the prompts and the head train.

The forward pass follows timm's ``VisionTransformer.forward_features`` step by step
(``patch_embed`` → ``_pos_embed`` → ``patch_drop`` → ``norm_pre`` → blocks → ``norm`` →
``forward_head``), so it exports to ONNX like the plain model. Checkpoints keep the plain
ViT's tensor names (plus ``backbone.prompt_tokens``). ``--weights RUN_DIR`` of a prompt run:
with ``--strategy prompt`` the tokens are continued (when their depth and count fit); any
other strategy trains and exports a plain ViT, so it loads the backbone and head and the log
says that the tokens were skipped (`carry_prompt_tokens`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..backbones import is_vit
from ..errors import ConfigError
from .base import StrategyPlan, param_groups
from .registry import register_strategy, setting

_WRAPPED = "backbone.vit."
PROMPT_KEY = "backbone.prompt_tokens"


class PromptedViT(nn.Module):
    """A frozen timm ``VisionTransformer`` with learnable prompt tokens."""

    def __init__(self, vit: nn.Module, tokens: int = 10, deep: bool = False) -> None:
        super().__init__()
        self.vit = vit
        self.num_features = vit.num_features
        self.deep = deep
        layers = len(vit.blocks) if deep else 1
        self.prompt_tokens = nn.Parameter(torch.empty(layers, tokens, vit.embed_dim))
        # VPT's init: uniform with the Xavier bound of a patch → embedding projection
        patch = vit.patch_embed.patch_size
        fan_in = getattr(vit.patch_embed.proj, "in_channels", 3) * math.prod(patch)
        bound = math.sqrt(6.0 / float(fan_in + vit.embed_dim))
        nn.init.uniform_(self.prompt_tokens, -bound, bound)

    @property
    def n_tokens(self) -> int:
        return self.prompt_tokens.shape[1]

    @property
    def num_prefix_tokens(self) -> int:
        return self.vit.num_prefix_tokens

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normed tokens as timm's ``forward_features`` returns them (prompts removed)."""
        vit = self.vit
        x = vit.patch_embed(x)
        x = vit._pos_embed(x)
        x = vit.patch_drop(x)
        x = vit.norm_pre(x)
        start, n = vit.num_prefix_tokens, self.n_tokens
        for index, block in enumerate(vit.blocks):
            if index < len(self.prompt_tokens):
                prompts = self.prompt_tokens[index].to(x.dtype).expand(x.shape[0], -1, -1)
                rest = x[:, start:] if index == 0 else x[:, start + n :]
                x = torch.cat([x[:, :start], prompts, rest], dim=1)
            x = block(x)
        x = torch.cat([x[:, :start], x[:, start + n :]], dim=1)
        return vit.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.vit.forward_head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class PromptPlan(StrategyPlan):
    """Prompts + head train; checkpoints use the plain ViT's tensor names."""

    def checkpoint_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return {
            _plain_name(k): v.detach().cpu().contiguous().clone()
            for k, v in model.state_dict().items()
        }

    def load_checkpoint_state(
        self, model: nn.Module, state: dict[str, torch.Tensor]
    ) -> tuple[list[str], list[str]]:
        own = {_plain_name(k): k for k in model.state_dict()}
        model.load_state_dict({own[k]: v for k, v in state.items() if k in own}, strict=False)
        return [k for k in own if k not in state], [k for k in state if k not in own]


def _plain_name(key: str) -> str:
    return "backbone." + key[len(_WRAPPED) :] if key.startswith(_WRAPPED) else key


def _describe(tokens: torch.Tensor) -> str:
    layers, n = tokens.shape[0], tokens.shape[1]
    return f"{n} {'deep' if layers > 1 else 'shallow'} prompt tokens"


def carry_prompt_tokens(
    model: nn.Module, skipped: dict[str, torch.Tensor], strategy: str
) -> tuple[bool, str | None]:
    """Continue the prompt tokens of a ``--weights`` file (which `load_tl_weights` could not
    place: the plain model has none) in a prompt run's model when their shape fits.

    Returns (loaded, a line for the log); the line is None when the file holds no tokens.
    """
    saved = skipped.get(PROMPT_KEY)
    if saved is None:
        return False, None
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, PromptedViT):
        return False, (
            f"--weights: the saved {_describe(saved)} are skipped: --strategy {strategy} builds "
            "a plain ViT (its backbone and head weights are loaded); "
            "--strategy prompt continues the tokens"
        )
    own = backbone.prompt_tokens
    if own.shape != saved.shape:
        depth = "deep" if saved.shape[0] > 1 else "shallow"
        return False, (
            f"--weights: the saved {_describe(saved)} do not fit this run's {_describe(own)} and "
            f"start from a fresh init; pass --prompt-tokens {saved.shape[1]} --prompt-depth "
            f"{depth} to continue them"
        )
    with torch.no_grad():
        own.copy_(saved)
    return True, f"--weights: continuing the saved {_describe(saved)}"


def add_prompts(model: nn.Module, tokens: int = 10, depth: str = "shallow") -> PromptedViT:
    """Freeze ``model.backbone`` (a timm ViT) and wrap it in a `PromptedViT`."""
    backbone = model.backbone
    if not is_vit(backbone):
        raise ConfigError(
            f"--strategy prompt needs a timm VisionTransformer backbone, not {type(backbone).__name__}",
            "--strategy prompt",
            "use e.g. --backbone vit_small_patch16_224 (or deit_*), or another strategy such as lora",
        )
    if int(tokens) < 1:
        raise ConfigError(
            "--prompt-tokens must be at least 1", "--prompt-tokens", "e.g. --prompt-tokens 10"
        )
    if depth not in ("shallow", "deep"):
        raise ConfigError(
            f"unknown prompt depth '{depth}'", "--prompt-depth", "use shallow or deep"
        )
    backbone.requires_grad_(False)
    model.backbone = PromptedViT(backbone, int(tokens), deep=depth == "deep")
    return model.backbone


def build_prompt_plan(
    model: nn.Module, lr: float, weight_decay: float, options: Mapping[str, Any]
) -> PromptPlan:
    """Wrap ``model.backbone`` in a `PromptedViT` (``prompt_tokens``/``prompt_depth`` of
    ``options``) and plan prompts + head at ``lr`` (no weight decay on the prompts)."""
    depth = str(setting(options, "prompt_depth", "shallow"))
    add_prompts(model, int(setting(options, "prompt_tokens", 10)), depth)
    named = dict(model.named_parameters())
    head = [n for n in named if not n.startswith("backbone.")]
    groups = [{"name": "prompts", "params": [named[PROMPT_KEY]], "lr": lr, "weight_decay": 0.0}]
    groups += param_groups("head", head, named, lr, weight_decay)
    plan = PromptPlan(
        name="prompt",
        stages=[],
        head=[PROMPT_KEY, *head],  # always trainable
        param_groups=[g for g in groups if g["params"]],
        trainable_stages=0,
        notes=[f"{model.backbone.n_tokens} {depth} prompt tokens"],
    )
    plan.apply(model, 0)
    return plan


@register_strategy("prompt")
def build(model: nn.Module, options: Mapping[str, Any]) -> PromptPlan:
    return build_prompt_plan(
        model, float(options["lr"]), float(setting(options, "weight_decay", 0.0)), options
    )
