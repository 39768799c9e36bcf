"""The detector: timm feature backbone → torchvision FPN → FCOS-style head.

Everything is tensors in, tensors out (no lists of dicts, no Python control flow that
depends on values), so the same module exports to ONNX. Outputs are concatenated over the
pyramid levels in the order of `level_points`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import lru_cache

import torch
from tl.core import BackboneSpec, ConfigError, check_model_name, create_backbone
from torch import nn
from torchvision.ops import FeaturePyramidNetwork

from .options import NmsSettings

STRIDES = (8, 16, 32)
PRIOR = 0.01
HEAD_DEPTH = 2  # conv + GroupNorm + ReLU blocks per tower


def feature_indices(name: str) -> tuple[int, ...]:
    """timm ``out_indices`` of the stride 8/16/32 features (probed on the meta device)."""
    import timm

    check_model_name(name)
    try:
        with torch.device("meta"):
            probe = timm.create_model(name, features_only=True)
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
        raise ConfigError(
            f"backbone {name} cannot give feature maps ({str(exc).splitlines()[0][:120]})",
            "--backbone",
            "pick a convolutional backbone such as resnet18, resnet10t or mobilenetv3_small_050",
        ) from exc
    reductions = probe.feature_info.reduction()
    indices = tuple(reductions.index(s) for s in STRIDES if s in reductions)
    if len(indices) != len(STRIDES):
        raise ConfigError(
            f"backbone {name} has no stride 8/16/32 feature maps (it has {reductions})",
            "--backbone",
            "pick a convolutional backbone such as resnet18, resnet10t or mobilenetv3_small_050",
        )
    return indices


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.value


def _tower(channels: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.GroupNorm(min(16, channels // 4), channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class DetectionHead(nn.Module):
    """FPN over the backbone features, then shared FCOS towers on every level.

    Returns ``(cls_logits (B, N, C), ltrb distances in pixels (B, N, 4), centerness logits
    (B, N))`` with N the locations of all levels.
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        channels: int = 64,
        depth: int | None = None,
    ) -> None:
        super().__init__()
        depth = HEAD_DEPTH if depth is None else depth
        self.fpn = FeaturePyramidNetwork(in_channels, channels)
        self.cls_tower = _tower(channels, depth)
        self.box_tower = _tower(channels, depth)
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box_reg = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in STRIDES)
        for conv in (self.cls_logits, self.box_reg, self.centerness):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - PRIOR) / PRIOR))

    def forward(
        self, features: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pyramid = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features)))
        logits, boxes, centers = [], [], []
        for level, (feature, stride) in enumerate(zip(pyramid.values(), STRIDES, strict=True)):
            cls_feature = self.cls_tower(feature)
            box_feature = self.box_tower(feature)
            logits.append(self.cls_logits(cls_feature).flatten(2).transpose(1, 2))
            distance = self.scales[level](self.box_reg(box_feature)).clamp(max=8.0).exp() * stride
            boxes.append(distance.flatten(2).transpose(1, 2))
            centers.append(self.centerness(box_feature).flatten(1))
        return torch.cat(logits, 1), torch.cat(boxes, 1), torch.cat(centers, 1)


class Detector(nn.Module):
    """uint8 (or 0..255 float) NCHW images → head outputs; normalisation is inside.

    ``nms`` is how this model's detections are post-processed (validation, export, report):
    a setting of the model, so two detectors in one process never share it.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        channels: int = 64,
        nms: NmsSettings | None = None,
        depth: int | None = None,
    ) -> None:
        super().__init__()
        self.nms = nms or NmsSettings.from_options({})
        self.backbone = backbone
        self.head = DetectionHead(
            list(backbone.feature_info.channels()), num_classes, channels, depth
        )
        self.num_classes = num_classes
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255, persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = (images.float() - self.mean) / self.std
        return self.head(self.backbone(x))


def build_detector(
    spec: BackboneSpec,
    num_classes: int,
    channels: int = 64,
    nms: NmsSettings | None = None,
    depth: int | None = None,
) -> Detector:
    backbone = create_backbone(spec, features_only=True, out_indices=feature_indices(spec.name))
    config = backbone.pretrained_cfg if hasattr(backbone, "pretrained_cfg") else {}
    mean = tuple(config.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(config.get("std", (0.229, 0.224, 0.225)))
    return Detector(backbone, num_classes, mean, std, channels, nms, depth)


def level_points(
    height: int, width: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres (N, 2) and strides (N,) of every location, in the head's output order."""
    points, strides = [], []
    for stride in STRIDES:
        ys = torch.arange(math.ceil(height / stride), device=device) * stride + stride // 2
        xs = torch.arange(math.ceil(width / stride), device=device) * stride + stride // 2
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x.flatten(), grid_y.flatten()], -1))
        strides.append(torch.full((grid_x.numel(),), stride, device=device))
    return torch.cat(points).float(), torch.cat(strides).float()


@lru_cache(maxsize=16)
def cached_level_points(
    height: int, width: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """`level_points` computed once per canvas and device (the loss needs them every step).

    A pure cache: the tensors depend on nothing else and nobody writes into them. They are
    made outside inference mode, so a first call from validation still gives tensors that
    training may use.
    """
    with torch.inference_mode(False):
        return level_points(height, width, device=device)
