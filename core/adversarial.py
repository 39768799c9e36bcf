"""Adversarial training and robustness evaluation for image classifiers (``--adversarial``).

Models take raw pixels in ``[0, 255]`` and normalise inside (`tl.core.models.ImageNormalize`),
so an attack perturbs the pixels the deployed ONNX model sees. ``--epsilon`` is given on
the ``[0, 1]`` image scale (8/255 ≈ 0.031 is the usual CIFAR budget; radiographs are far
more fragile, hence the smaller default) and multiplied by 255 here.

FGSM: one signed-gradient step of size ε. PGD (Madry et al.): ``steps`` steps of size
``2.5 ε / steps`` from a random start inside the ε-ball, projected back after each step.
Training mixes clean and adversarial loss, ``(1 - mix) · clean + mix · adversarial``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .errors import ConfigError
from .task import Task, as_task

ATTACKS = ("fgsm", "pgd")
DEFAULT_EPSILON = 2 / 255
DEFAULT_PGD_STEPS = 5

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def attack(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: LossFn,
    method: str,
    epsilon: float,
    steps: int = DEFAULT_PGD_STEPS,
) -> torch.Tensor:
    """Adversarial version of ``images`` (pixels in [0, 255]) within an L∞ ball of
    ``epsilon`` (on the [0, 1] scale). Gradients reach only the input, never the weights'
    ``.grad``; works inside ``torch.no_grad`` (not inside ``inference_mode``)."""
    eps = float(epsilon) * 255.0
    clean = images.detach().float()
    if method == "fgsm":
        steps, step_size, x = 1, eps, clean.clone()
    elif method == "pgd":
        step_size = 2.5 * eps / max(1, steps)
        x = (clean + torch.empty_like(clean).uniform_(-eps, eps)).clamp(0.0, 255.0)
    else:
        raise ConfigError(f"unknown attack '{method}'", "--adversarial", "use fgsm or pgd")
    with torch.enable_grad():
        for _ in range(steps):
            x.requires_grad_(True)
            loss = loss_fn(model(x).float(), targets)
            (grad,) = torch.autograd.grad(loss, x)
            x = x.detach() + step_size * grad.sign()
            x = torch.minimum(torch.maximum(x, clean - eps), clean + eps).clamp(0.0, 255.0)
    return x.detach()


def check_options(options: dict[str, Any], model: nn.Module) -> tuple[str, float, int, float]:
    """(method, epsilon, steps, mix) from the run options; only pixel-input classifiers."""
    from .models import ClassifierModel, ImageNormalize

    method = str(options["adversarial"]).lower()
    if method not in ATTACKS:
        raise ConfigError(
            f"unknown attack '{method}'", "--adversarial", f"use {' or '.join(ATTACKS)}"
        )
    if not (isinstance(model, ClassifierModel) and isinstance(model.normalize, ImageNormalize)):
        raise ConfigError(
            "--adversarial needs an image classification plugin (pixel inputs, class logits)",
            "--adversarial",
            "use it with medical (or another image classifier), or drop the flag",
        )
    epsilon = float(options.get("epsilon") or DEFAULT_EPSILON)
    if not 0 < epsilon <= 1:
        raise ConfigError(
            f"--epsilon {epsilon} is outside (0, 1]",
            "--epsilon",
            "give it on the [0, 1] image scale, e.g. --epsilon 0.0078 for 2/255",
        )
    steps = int(options.get("pgd_steps") or DEFAULT_PGD_STEPS)
    mix = float(options["adversarial_mix"] if options.get("adversarial_mix") is not None else 0.5)
    if not 0 < mix <= 1:
        raise ConfigError(
            "--adversarial-mix must be in (0, 1]", "--adversarial-mix", "e.g. 0.5 (half/half)"
        )
    return method, epsilon, steps, mix


def adversarial_task(task: Any, plugin: Any, options: dict[str, Any], model: nn.Module) -> Task:
    """``task`` whose training batches get an adversarial loss term (``--adversarial``);
    validation, metrics and monitoring stay ``task``'s."""
    task = as_task(task)
    method, epsilon, steps, mix = check_options(options, model)

    def training_step(model: nn.Module, batch: Any) -> torch.Tensor:
        images, targets = plugin.split_batch(batch)
        loss = plugin.model_loss(model)
        adv = attack(model, images, targets, loss, method, epsilon, steps)
        adv_loss = loss(model(adv), targets)
        if mix >= 1:
            return adv_loss
        return (1 - mix) * loss(model(images), targets) + mix * adv_loss

    return dataclasses.replace(task, training_step=training_step)


def _correct(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if targets.ndim == 1:
        return logits.argmax(1) == targets
    return ((logits > 0) == (targets > 0.5)).all(1)  # multi-label: exact match


def robust_accuracy(
    model: nn.Module,
    plugin: Any,
    dataset: Any,
    collate: Any,
    method: str,
    epsilon: float,
    steps: int = DEFAULT_PGD_STEPS,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Clean and attacked accuracy of ``model`` on ``dataset`` (eval mode, white box)."""
    from torch.utils.data import DataLoader

    model = model.to(device).eval()
    torch.manual_seed(seed)  # PGD's random start
    clean = attacked = total = 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    for batch in loader:
        images, targets = plugin.split_batch(batch)
        images, targets = images.to(device), targets.to(device)
        with torch.no_grad():
            clean += int(_correct(model(images).float(), targets).sum())
        adv = attack(model, images, targets, plugin.model_loss(model), method, epsilon, steps)
        with torch.no_grad():
            attacked += int(_correct(model(adv).float(), targets).sum())
        total += len(targets)
    return {
        "clean_accuracy": clean / max(1, total),
        "robust_accuracy": attacked / max(1, total),
        "n": total,
    }


def adversarial_report(
    plugin: Any,
    data: Any,
    model: nn.Module,
    options: dict[str, Any],
    device: Any,
    plain_model: nn.Module | None = None,
    plain_seconds: float | None = None,
) -> dict[str, Any]:
    """``metrics.json["adversarial"]``: the attack and the adversarially trained model's
    clean/robust test accuracy, and the same for the plainly trained model when given."""
    method, epsilon, steps, mix = check_options(options, model)
    seed = int(options.get("seed") or 0)
    kwargs = dict(steps=steps, device=device, seed=seed)
    result: dict[str, Any] = {
        "attack": method,
        "epsilon": epsilon,
        "epsilon_pixels": round(epsilon * 255, 3),
        "pgd_steps": steps if method == "pgd" else None,
        "train_mix": mix,
        "evaluated_with": f"white-box {method.upper()} on the test split, eval mode",
    }
    result.update(
        robust_accuracy(model, plugin, data.test, data.collate, method, epsilon, **kwargs)
    )
    if plain_model is not None:
        plain = robust_accuracy(
            plain_model, plugin, data.test, data.collate, method, epsilon, **kwargs
        )
        result["plain"] = {**plain, "train_seconds": plain_seconds}
        result["robustness_gain"] = result["robust_accuracy"] - plain["robust_accuracy"]
    return result


def report_markdown(adv: dict[str, Any]) -> str:
    rows = [
        f"Trained on a {1 - adv['train_mix']:.0%} clean / {adv['train_mix']:.0%} adversarial "
        f"mix; attack **{adv['attack'].upper()}**, ε = {adv['epsilon']:.4f} "
        f"({adv['epsilon_pixels']} of 255 grey levels), {adv['evaluated_with']}.",
        "",
        "| model | clean accuracy | robust accuracy |",
        "|---|---:|---:|",
        f"| adversarially trained | {adv['clean_accuracy']:.4f} | {adv['robust_accuracy']:.4f} |",
    ]
    if "plain" in adv:
        p = adv["plain"]
        rows.append(f"| plain training | {p['clean_accuracy']:.4f} | {p['robust_accuracy']:.4f} |")
    return "\n".join(rows)


__all__ = ["adversarial_report", "adversarial_task", "attack", "robust_accuracy"]


def wrap_task(task: Any, plugin: Any, options: dict[str, Any], model: nn.Module) -> Any:
    """The trainer's task for ``tl run``: adversarial when ``--adversarial`` is set."""
    if not options.get("adversarial"):
        return task
    wrapped = adversarial_task(task, plugin, options, model)
    model.supports_feature_cache = False  # attacks need pixels, not cached features
    return wrapped


def report_sections(metrics: dict[str, Any]) -> list[Any]:
    from .plugin import ReportSection

    if "adversarial" not in metrics:
        return []
    return [ReportSection("Adversarial robustness", report_markdown(metrics["adversarial"]))]
