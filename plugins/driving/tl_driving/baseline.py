"""The peer baseline: torchvision's own FCOS on the run's timm backbone, trained like tl's.

What a user would otherwise run: ``torchvision.models.detection.FCOS`` with torchvision's
`FeaturePyramidNetwork` (P3–P5 from the timm ``features_only`` backbone, P6/P7 from
`LastLevelP6P7`, as ``fcos_resnet50_fpn`` builds it), its own target assignment, losses and
post-processing. It gets what tl's detector gets: the same backbone with the same initial
weights, the same train/val/test split, letterboxed canvas, augmentation, epochs, batch
size, AdamW learning rate and weight decay, warmup + cosine schedule, precise BatchNorm for
short runs, the best validation epoch, the same NMS settings — and the same COCO evaluator
(`tl_driving.evaluation.detection_metrics`). Only the detector differs.

The baseline depends on the data and the main model's recipe, so `baseline_for` trains it
once per loaded dataset (a `--compare-scratch` variant reuses it).
"""

from __future__ import annotations

import copy
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch
from tl.core import BackboneSpec, TLData, create_backbone, load_tl_weights
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

from .evaluation import detection_metrics
from .model import feature_indices

PRECISE_BN_BELOW_STEPS = 500  # as the core trainer's `--precise-bn auto`
PRECISE_BN_BATCHES = 50
LR_FLOOR = 0.01  # the cosine ends at 1 % of the peak, as the core trainer's


class TimmFpn(nn.Module):
    """timm ``features_only`` backbone (strides 8/16/32) → torchvision FPN with P6/P7."""

    def __init__(self, body: nn.Module, channels: int) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(
            list(body.feature_info.channels()), channels, LastLevelP6P7(channels, channels)
        )
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


def build_baseline(
    spec: BackboneSpec,
    num_classes: int,
    canvas: tuple[int, int],
    channels: int,
    nms: Mapping[str, Any],
    backbone_state: Mapping[str, torch.Tensor] | None = None,
) -> FCOS:
    """torchvision FCOS on ``spec``'s backbone; ``backbone_state``: its initial tensors."""
    body = create_backbone(spec, features_only=True, out_indices=feature_indices(spec.name))
    if backbone_state is not None:
        body.load_state_dict(dict(backbone_state))
    config = getattr(body, "pretrained_cfg", None) or {}
    height, width = canvas
    return FCOS(
        TimmFpn(body, channels),
        num_classes,
        min_size=min(height, width),  # the letterboxed canvas is fed as is: no resizing
        max_size=max(height, width),
        image_mean=list(config.get("mean", (0.485, 0.456, 0.406))),
        image_std=list(config.get("std", (0.229, 0.224, 0.225))),
        score_thresh=float(nms["score_threshold"]),
        nms_thresh=float(nms["iou_threshold"]),
        detections_per_img=int(nms["max_det"]),
    )


def _inputs(images: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
    return list((images.to(device).float() / 255.0).unbind(0))


def _targets(targets: list[dict[str, torch.Tensor]], device: torch.device) -> list[dict]:
    return [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]


def padded(detections: list[dict[str, torch.Tensor]], max_det: int) -> torch.Tensor:
    """torchvision's per-image dicts → tl's padded ``(B, max_det, 6)`` rows."""
    out = torch.zeros(len(detections), max_det, 6)
    out[..., 5] = -1
    for index, found in enumerate(detections):
        n = min(max_det, len(found["scores"]))
        out[index, :n, :4] = found["boxes"][:n].float().cpu()
        out[index, :n, 4] = found["scores"][:n].float().cpu()
        out[index, :n, 5] = found["labels"][:n].float().cpu()
    return out


def _loader(dataset: Any, data: TLData, batch_size: int, shuffle: bool, seed: int) -> Any:
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=data.collate,
        generator=generator if shuffle else None,
    )  # fmt: skip


@torch.inference_mode()
def evaluate_baseline(
    model: FCOS, dataset: Any, data: TLData, batch_size: int, device: torch.device
) -> dict[str, Any]:
    """COCO metrics of ``model`` on ``dataset`` with the plugin's evaluator."""
    model.eval()
    outputs = []
    for images, targets in _loader(dataset, data, batch_size, False, 0):
        found = model(_inputs(images, device))
        outputs.append({"detections": padded(found, model.detections_per_img), "targets": targets})
    metrics, _ = detection_metrics(outputs, data.labels)
    return metrics


def _batchnorms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def _precise_bn(model: FCOS, loader: Any, device: torch.device) -> None:
    """BatchNorm statistics as a true average over training batches, like the core's."""
    norms = _batchnorms(model)
    if not norms:
        return
    model.train()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    for index, (images, _) in enumerate(loader):
        if index >= PRECISE_BN_BATCHES:
            break
        batch, _ = model.transform(_inputs(images, device))
        model.backbone(batch.tensors)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


def _schedule(optimizer: torch.optim.Optimizer, total: int, warmup: float) -> Any:
    warm = int(warmup * total)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, total - warm), eta_min=optimizer.param_groups[0]["lr"] * LR_FLOOR
    )
    if not warm:
        return cosine
    linear = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0 / warm, 1.0, total_iters=warm)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warm])


def train_baseline(
    model: FCOS, data: TLData, options: Mapping[str, Any], device: torch.device
) -> tuple[FCOS, list[dict[str, Any]]]:
    """Train ``model`` on ``data.train`` as the core trainer trains tl's detector; return it
    with the best validation epoch's weights, and the per-epoch history."""
    epochs, batch_size = int(options["epochs"]), int(options["batch_size"])
    seed = int(options["seed"])
    model.to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": float(options["weight_decay"])},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=float(options["lr"]),
    )  # fmt: skip
    steps = -(-len(data.train) // batch_size)
    schedule = _schedule(optimizer, max(1, steps * epochs), float(options["warmup"]))
    precise = options.get("precise_bn", "auto")
    best, best_state, history = -1.0, None, []
    for epoch in range(epochs):
        torch.manual_seed(seed * 1000 + epoch)
        model.train()
        for images, targets in _loader(data.train, data, batch_size, True, seed * 1000 + epoch):
            losses = model(_inputs(images, device), _targets(targets, device))
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        if precise == "on" or (precise == "auto" and (epoch + 1) * steps < PRECISE_BN_BELOW_STEPS):
            _precise_bn(model, _loader(data.train, data, batch_size, True, 100_000 + epoch), device)
        metrics = evaluate_baseline(model, data.val, data, batch_size, device)
        history.append({"epoch": epoch + 1, "val_map50": metrics["map50"]})
        if metrics["map50"] > best:
            best, best_state = metrics["map50"], copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return model, history


def baseline_metrics(
    data: TLData,
    options: Mapping[str, Any],
    backbone_state: Mapping[str, torch.Tensor] | None,
    nms: Mapping[str, Any],
    device: torch.device,
) -> dict[str, Any]:
    """Train and test the baseline: test mAP50 / mAP50-95, per-class AP50, seconds, epochs."""
    torch.manual_seed(int(options["seed"]))
    spec = BackboneSpec(name=str(options["backbone"]), weights="none", options=dict(options))
    # torchvision's FCOS head normalises with GroupNorm(32, channels): a multiple of 32
    channels = max(32, 32 * round(int(options["head_channels"]) / 32))
    model = build_baseline(
        spec, len(data.labels), tuple(data.info["canvas"]), channels, nms, backbone_state
    )
    started = time.time()
    model, history = train_baseline(model, data, options, device)
    seconds = time.time() - started
    test = evaluate_baseline(model, data.test, data, int(options["batch_size"]), device)
    best = max(range(len(history)), key=lambda i: history[i]["val_map50"]) + 1
    return {
        "detector": "torchvision FCOS (torchvision FPN with P6/P7 on the same timm backbone)",
        "channels": channels,
        "map50": test["map50"],
        "map50_95": test["map50_95"],
        "per_class_ap50": test["per_class_ap50"],
        "train_seconds": round(seconds, 2),
        "epochs_run": len(history),
        "best_epoch": best,
    }


def initial_backbone_state(plugin: Any, data: TLData, options: Mapping[str, Any]) -> dict:
    """The backbone tensors tl's detector started from: built the way the core builds it
    (seeded, ``--weights`` hub / none / a file, tl weights loaded through the plugin's
    `adapt_weights`)."""
    torch.manual_seed(int(options["seed"]))
    spec = BackboneSpec(name=str(options["backbone"]), weights=str(options["weights"]),
                        options=dict(options))  # fmt: skip
    model = plugin.build_model(spec, data, options)
    if spec.tl_weights is not None:
        load_tl_weights(model, spec.tl_weights,
                        adapt=lambda state, meta: plugin.adapt_weights(state, meta, model, data))  # fmt: skip
    return {k.removeprefix("backbone."): v for k, v in model.state_dict().items()
            if k.startswith("backbone.")}  # fmt: skip


_cache: dict[str, Any] = {"data": None, "metrics": None}


def baseline_for(
    data: TLData,
    options: Mapping[str, Any],
    backbone_state: Any,
    nms: Mapping[str, Any],
    device: torch.device,
) -> Mapping[str, Any]:
    """`baseline_metrics`, computed once per loaded dataset (the first model that asks — the
    run's main model — sets the recipe; ``backbone_state`` is called only then)."""
    cached = _cache["data"]
    if cached is not None and cached() is data:
        return _cache["metrics"]
    metrics = MappingProxyType(baseline_metrics(data, options, backbone_state(), nms, device))
    _cache.update(data=weakref.ref(data), metrics=metrics)
    return metrics
