"""`RunConfig`: the core's options of `tl run` and `tl pretrain`, their help, ranges and
defaults in one place (plugins add their own dataclass)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from .option_types import FRACTION, NON_NEGATIVE, OPEN_FRACTION, POSITIVE, FiniteRange
from .options import COMMANDS, option


class LearningRate(click.ParamType):
    """A positive finite number, or ``find`` (`tl.core.lr_finder`: a range test picks it)."""

    name = "lr"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "find":
            return "find"
        try:
            float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a number nor 'find'", param, ctx)
        return POSITIVE.convert(value, param, ctx)

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return "NUMBER|find"


#: ``--strategy`` values, each with the option group a plugin must offer for it (None: all)
STRATEGIES: tuple[tuple[str, str | None], ...] = (
    ("linear", None),
    ("partial:N", None),
    ("full", None),
    ("gradual", None),
    ("llrd", None),
    ("auto", None),
    ("lora", "lora"),
    ("prompt", "prompt"),
    ("prototypes", "prototypes"),
)


def offered_strategies(groups: frozenset[str]) -> list[str]:
    """The strategies a plugin with option ``groups`` offers."""
    return [name for name, group in STRATEGIES if group is None or group in groups]


def strategy_group(strategy: str) -> str | None:
    """The option group ``strategy`` (e.g. ``"lora"``, ``"partial:2"``) needs, if any."""
    base = strategy.strip().lower().partition(":")[0]
    return next((group for name, group in STRATEGIES if name.partition(":")[0] == base), None)


@dataclass(frozen=True)
class RunConfig:
    """The core's options of `tl run` and `tl pretrain` (plugins add their own dataclass)."""

    data: str | None = option(None, "Dataset folder or file.", type=click.Path(), commands=COMMANDS)
    backbone: str | None = option(
        None,
        "Model name (a timm model for image plugins; default: the plugin's).",
        commands=COMMANDS,
    )
    weights: str = option(
        "hub",
        "hub | none | PATH (.safetensors/.pth, a run directory, a `tl pretrain` output).",
        commands=COMMANDS,
    )
    strategy: str | None = option(
        None,
        lambda groups: (
            " | ".join(offered_strategies(groups))
            + " (default: auto with pretrained --weights — head first, one more stage each "
            "epoch, no early stop before all has trained — full with --weights none)"
        ),
    )
    epochs: int = option(10, "Maximum epochs.", type=click.IntRange(min=1), commands=COMMANDS)
    batch_size: int = option(32, "Batch size.", type=click.IntRange(min=1), commands=COMMANDS)
    lr: float | str = option(
        1e-3,
        "Peak learning rate, or `find`: a short LR range test picks it (tl run only).",
        type=LearningRate(),
        commands=COMMANDS,
    )
    weight_decay: float = option(0.05, "Weight decay.", type=NON_NEGATIVE, commands=COMMANDS)
    optimizer: str = option(
        "adamw", "Optimizer.", type=click.Choice(["adamw", "sgd"]), commands=COMMANDS
    )
    warmup: float = option(0.1, "Warmup fraction of all steps.", type=FRACTION, commands=COMMANDS)
    grad_accum: int = option(
        1, "Gradient accumulation steps.", type=click.IntRange(min=1), commands=COMMANDS
    )
    patience: int = option(
        5,
        "Early stopping patience in epochs; 0 disables.",
        type=click.IntRange(min=0),
        commands=COMMANDS,
    )
    layer_decay: float = option(
        0.75, "llrd: LR decay per stage.", type=FiniteRange(0, 1, min_open=True)
    )
    unfreeze_every: int = option(
        1, "gradual: epochs between unfreezing stages.", type=click.IntRange(min=1)
    )
    label_smoothing: float = option(
        0.0, "Label smoothing.", type=OPEN_FRACTION, group="label_smoothing"
    )
    dropout: float = option(0.0, "Dropout before the head.", type=OPEN_FRACTION, group="dropout")
    lora_rank: int = option(8, "lora: adapter rank.", type=click.IntRange(min=1), group="lora")
    lora_alpha: float = option(16.0, "lora: scaling alpha.", type=POSITIVE, group="lora")
    lora_targets: str | None = option(
        None,
        "lora: comma list of module-name suffixes/regexes (default: a ViT's "
        "qkv,attn.proj,fc1,fc2; other backbones every conv/linear layer).",
        group="lora",
    )
    prompt_tokens: int = option(
        10, "prompt: tokens per layer.", type=click.IntRange(min=1), group="prompt"
    )
    prompt_depth: str = option(
        "shallow",
        "prompt: at the input only, or new prompts at every block.",
        type=click.Choice(["shallow", "deep"]),
        group="prompt",
    )
    shots: int | None = option(
        None,
        "prototypes: training items per class (default: all).",
        type=click.IntRange(min=1),
        group="prototypes",
    )
    seed: int = option(0, "Random seed.", type=click.IntRange(0, 2**32 - 1), commands=COMMANDS)
    device: str = option(
        "auto", "Device.", type=click.Choice(["auto", "cpu", "cuda"]), commands=COMMANDS
    )
    num_workers: int = option(
        0, "DataLoader worker processes.", type=click.IntRange(min=0), commands=COMMANDS
    )
    compile: bool = option(False, "torch.compile the model.", flag=True, commands=COMMANDS)
    precise_bn: str = option(
        "auto",
        "Re-estimate BatchNorm statistics from each epoch's last training batches; auto = while "
        "training is under 500 optimizer steps (short runs from scratch validate badly without).",
        type=click.Choice(["auto", "on", "off"]),
        commands=COMMANDS,
        group="batchnorm",
    )
    cache_features: str = option(
        "auto",
        "Train a frozen backbone's head on features computed once (no augmentation); "
        "auto = when the backbone is fully frozen.",
        type=click.Choice(["auto", "on", "off"]),
        group="feature_cache",
    )
    checkpoint_every: float = option(
        60.0,
        "Seconds of training between checkpoint writes (0: after every epoch); the final "
        "epoch's is always written, and a kill loses at most this much.",
        type=NON_NEGATIVE,
        commands=COMMANDS,
    )
    out: str = option(
        "runs", "Parent folder of run directories.", type=click.Path(), commands=COMMANDS
    )
    compare_scratch: bool | None = option(
        None,
        "Also train from random init and report the transfer gain (default: on when "
        "--weights is pretrained — hub, a file or a run — off with --weights none)",
        flag=True,
    )
    skip_bad: bool = option(
        False, "Skip (and count) corrupt items instead of failing.", flag=True, commands=COMMANDS
    )
    track: str = option(
        "none",
        "Experiment tracking: mlflow logs params, per-epoch metrics and artifacts "
        '(MLFLOW_TRACKING_URI, else MLflow\'s default; needs `pip install "tl[mlflow]"`).',
        type=click.Choice(["none", "mlflow"]),
        commands=COMMANDS,
    )
    adversarial: str | None = option(
        None,
        "Image classifiers: adversarial training; test accuracy under this attack for this "
        "model and a plainly trained one.",
        type=click.Choice(["fgsm", "pgd"]),
        group="adversarial",
    )
    epsilon: float = option(
        2 / 255,
        "Attack budget on the [0, 1] pixel scale.",
        type=FiniteRange(0, 1, min_open=True),
        group="adversarial",
    )
    pgd_steps: int = option(5, "PGD steps.", type=click.IntRange(min=1), group="adversarial")
    adversarial_mix: float = option(
        0.5,
        "Weight of the adversarial loss; the rest is clean loss.",
        type=FRACTION,
        group="adversarial",
    )
    adversarial_plain: bool = option(
        True,
        "Also train without attacks to compare robustness.",
        flag=True,
        group="adversarial",
    )
