"""What every strategy shares: the plan a run trains with, and how the backbone is staged.

Every strategy works on a model with ``.backbone`` and ``.head``. The backbone is cut into
ordered *stages* with timm's ``group_matcher(coarse=True)`` when it has one (stem, stage 1,
…), otherwise by its top-level children. Everything outside ``.backbone`` counts as head.

The optimizer always receives *all* parameters, grouped by stage; frozen ones simply have
``requires_grad=False`` (no gradient → AdamW/SGD skip them). Gradual unfreezing therefore
only flips flags: param groups and the LR schedule stay the same objects for the whole run.

This module imports nothing of tl but checkpoints/errors, so the trainer can depend on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..checkpoints import state_dict_for_saving


@dataclass(frozen=True)
class FitContext:
    """What a plan needs to train itself (`StrategyPlan.fit`).

    ``trainer`` is a `tl.core.trainer.Trainer`; ``split_batch`` turns a batch into
    (inputs, targets) (`Plugin.split_batch`), ``seed``/``shots``/``labels``/``multilabel``
    serve strategies that build their head from the data (prototypes).
    """

    trainer: Any
    model: nn.Module
    train: Any
    val: Any
    collate: Any = None
    resume: bool = False
    split_batch: Callable[[Any], tuple[Any, Any]] | None = None
    seed: int = 0
    shots: int | None = None
    labels: Sequence[str] = ()
    multilabel: bool = False

    @classmethod
    def for_data(
        cls,
        trainer: Any,
        model: nn.Module,
        data: Any,
        *,
        split_batch: Callable[[Any], tuple[Any, Any]] | None = None,
        seed: int = 0,
        shots: int | None = None,
        resume: bool = False,
    ) -> FitContext:
        """The context for a `tl.core.plugin.TLData`'s train/val splits."""
        return cls(
            trainer=trainer,
            model=model,
            train=data.train,
            val=data.val,
            collate=data.collate,
            resume=resume,
            split_batch=split_batch,
            seed=int(seed),
            shots=shots,
            labels=tuple(data.labels),
            multilabel=is_multilabel(data),
        )


def is_multilabel(data: Any) -> bool:
    return bool(getattr(data, "multilabel", False)) or getattr(data, "task", "") == "multilabel"


@dataclass
class StrategyPlan:
    """Which parameters train (per epoch), their optimizer groups, and what a checkpoint
    holds. Strategies subclass it where they differ (`tl.core.strategies.register_strategy`)."""

    name: str
    stages: list[list[str]]
    head: list[str]
    param_groups: list[dict[str, Any]]
    trainable_stages: int
    unfreeze_every: int = 1
    notes: list[str] = field(default_factory=list)
    #: early stopping does not stop before this many epochs (e.g. a linear probe phase)
    min_epochs: int = 0

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    def stages_trainable_at(self, epoch: int) -> int:
        """How many backbone stages (from the top) train in ``epoch`` (0-based)."""
        return self.trainable_stages

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

    def fit(self, ctx: FitContext) -> Any:
        """Train ``ctx.model`` and leave it as the run evaluates and exports it; returns the
        trainer's `tl.core.trainer.FitResult`."""
        result = ctx.trainer.fit(
            ctx.model, self, ctx.train, ctx.val, ctx.collate, resume=ctx.resume
        )
        self.finish(ctx.model)
        return result

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
        has_params, trainable = _eval_frozen(model.backbone)
        if has_params and not trainable:
            model.backbone.eval()


def _eval_frozen(module: nn.Module) -> tuple[bool, bool]:
    """Put the topmost modules whose parameters are all frozen (and their whole subtrees)
    in eval mode, in one walk; returns (has parameters, has trainable ones)."""
    has_params = trainable = False
    for param in module.parameters(recurse=False):
        has_params, trainable = True, trainable or param.requires_grad
    children = [(child, *_eval_frozen(child)) for child in module.children()]
    has_params = has_params or any(has for _, has, _ in children)
    trainable = trainable or any(train for _, _, train in children)
    if has_params and not trainable:
        return True, False  # a frozen parent switches this subtree off in one call
    for child, child_has, child_trainable in children:
        if child_has and not child_trainable:
            child.eval()
    return has_params, trainable


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
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


def _is_no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim <= 1 or name.endswith(".bias") or "pos_embed" in name or "token" in name


def param_groups(
    label: str, names: list[str], named: dict[str, nn.Parameter], lr: float, weight_decay: float
) -> list[dict[str, Any]]:
    """Optimizer groups ``label`` and ``label.no_decay`` (biases, norms, position embeddings
    and tokens get no weight decay) for the parameters ``names`` of ``named``."""
    decay = [named[n] for n in names if not _is_no_decay(n, named[n])]
    no_decay = [named[n] for n in names if _is_no_decay(n, named[n])]
    return [
        {"name": label, "params": decay, "lr": lr, "weight_decay": weight_decay},
        {"name": f"{label}.no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0},
    ]
