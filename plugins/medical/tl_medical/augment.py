"""Medical's training augmentation, a whole uint8 batch at a time.

The very images of the per-image torchvision pipeline it replaces,
``v2.Compose([v2.RandomAffine(degrees=7, translate=(0.04, 0.04), scale=(0.92, 1.08)),
v2.ColorJitter(brightness=0.15, contrast=0.15)])`` applied image by image: the same random
draws in the same order (so a seed gives the same batch), the same inverse-affine grid,
nearest sampling with black outside, brightness and contrast in the drawn order, each
truncated to uint8 as torchvision's ``_blend`` does. Only the per-image work is batched:
one ``grid_sample`` and a few tensor operations for the batch instead of two transform
calls per image, which were most of the cost of a small-image epoch. No flips: laterality matters in radiographs.
Random numbers come from torch's global generator, which the trainer reseeds every epoch,
so runs and ``--resume`` are reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AffineDraw:
    """One batch's affine parameters, one entry per image (angle in degrees)."""

    angle: torch.Tensor
    shift_x: torch.Tensor
    shift_y: torch.Tensor
    scale: torch.Tensor


class BatchAugment:
    degrees, translate, scale, brightness, contrast = 7.0, 0.04, (0.92, 1.08), 0.15, 0.15

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        _, _, height, width = images.shape
        rows = [self._draw(height, width) for _ in range(len(images))]
        angle, shift_x, shift_y, scale, brightness, contrast, contrast_first = (
            torch.tensor(column, dtype=torch.float64) for column in zip(*rows, strict=True)
        )
        out = affine(images, AffineDraw(angle, shift_x, shift_y, scale))
        return color(out, brightness, contrast, contrast_first.bool())

    def _draw(self, height: int, width: int) -> tuple[float, ...]:
        """One image's parameters, drawn as torchvision's ``RandomAffine`` then
        ``ColorJitter`` draw them (same calls, same order), so that a seed gives the
        pipeline's very images."""
        angle = torch.empty(1).uniform_(-self.degrees, self.degrees).item()
        max_dx, max_dy = float(self.translate * width), float(self.translate * height)
        shift_x = int(round(float(torch.empty(1).uniform_(-max_dx, max_dx).item())))
        shift_y = int(round(float(torch.empty(1).uniform_(-max_dy, max_dy).item())))
        scale = torch.empty(1).uniform_(*self.scale).item()
        order = torch.randperm(4).tolist()  # brightness, contrast, saturation, hue
        brightness = _value(1 - self.brightness, 1 + self.brightness)
        contrast = _value(1 - self.contrast, 1 + self.contrast)
        contrast_first = order.index(1) < order.index(0)
        return angle, shift_x, shift_y, scale, brightness, contrast, contrast_first


def _value(low: float, high: float) -> float:
    return float(torch.empty(1).uniform_(low, high).item())


def affine(images: torch.Tensor, draw: AffineDraw) -> torch.Tensor:
    """Each uint8 image rotated, scaled and shifted about its centre, as torchvision's
    ``F.affine`` (nearest, zeros outside) would with that image's parameters."""
    n, _, height, width = images.shape
    rot = draw.angle * (math.pi / 180)
    cos, sin = torch.cos(rot) / draw.scale, torch.sin(rot) / draw.scale
    # torchvision's `_get_inverse_affine_matrix` with the centre at (0, 0) and no shear
    theta = torch.stack(
        [
            torch.stack([cos, sin, -cos * draw.shift_x - sin * draw.shift_y], 1),
            torch.stack([-sin, cos, sin * draw.shift_x - cos * draw.shift_y], 1),
        ],
        1,
    ).to(torch.float32)
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, steps=width)
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, steps=height)
    base = torch.empty(1, height, width, 3)
    base[..., 0].copy_(xs)
    base[..., 1].copy_(ys.unsqueeze(-1))
    base[..., 2].fill_(1)
    scaled = theta.transpose(1, 2) / torch.tensor([0.5 * width, 0.5 * height])
    grid = base.view(1, height * width, 3).expand(n, -1, -1).bmm(scaled).view(n, height, width, 2)
    out = F.grid_sample(
        images.to(torch.float32), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    return out.round_().to(images.dtype)


def color(
    images: torch.Tensor,
    brightness: torch.Tensor,
    contrast: torch.Tensor,
    contrast_first: torch.Tensor,
) -> torch.Tensor:
    """torchvision's ``adjust_brightness`` and ``adjust_contrast`` on uint8 images, per image
    factors, in the order each image drew."""
    order = contrast_first.view(-1, 1, 1, 1)
    first = torch.where(order, _contrast(images, contrast), _brightness(images, brightness))
    return torch.where(order, _brightness(first, brightness), _contrast(first, contrast))


def _brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    ratio = factor.to(torch.float32).view(-1, 1, 1, 1)
    return images.mul(ratio).clamp_(0, 255).to(images.dtype)


def _contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    ratio = factor.to(torch.float32).view(-1, 1, 1, 1)
    if images.shape[1] == 3:
        r, g, b = images.unbind(dim=1)
        grey = r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(1).floor_()
    else:
        grey = images.to(torch.float32)
    mean = grey.mean(dim=(1, 2, 3), keepdim=True)
    return images.mul(ratio).add_(mean * (1 - ratio)).clamp_(0, 255).to(images.dtype)
