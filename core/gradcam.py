"""Grad-CAM for timm classifiers (CNN feature maps and ViT patch tokens)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def grad_cam(
    model: nn.Module, images: torch.Tensor, class_index: torch.Tensor | None = None
) -> np.ndarray:
    """Heatmaps (N, H, W) in [0, 1] for ``model`` = `ClassifierModel` over a timm backbone.

    Gradients of the class score flow to the backbone's last feature map
    (``forward_features``); ViT tokens are reshaped to their patch grid first.
    """
    backbone = model.backbone
    was_training = model.training
    model.eval()
    images = images.detach()
    inputs = model.normalize(images) if hasattr(model, "normalize") else images.float()
    with torch.enable_grad():
        features = backbone.forward_features(inputs)
        features.retain_grad()
        logits = model.head(backbone.forward_head(features, pre_logits=True))
        if class_index is None:
            class_index = logits.argmax(dim=1)
        score = logits.gather(1, class_index.view(-1, 1)).sum()
        score.backward()
    fmap, grads = features.detach(), features.grad.detach()
    if fmap.ndim == 3:  # (N, tokens, C): drop prefix tokens, reshape to the patch grid
        prefix = getattr(
            backbone, "num_prefix_tokens", fmap.shape[1] - int(np.sqrt(fmap.shape[1])) ** 2
        )
        fmap, grads = fmap[:, prefix:], grads[:, prefix:]
        side = int(np.sqrt(fmap.shape[1]))
        fmap = fmap.transpose(1, 2).reshape(len(fmap), -1, side, side)
        grads = grads.transpose(1, 2).reshape(len(grads), -1, side, side)
    elif (
        fmap.ndim == 4
        and fmap.shape[1] < fmap.shape[-1]
        and getattr(backbone, "output_fmt", "NCHW") == "NHWC"
    ):
        fmap, grads = fmap.permute(0, 3, 1, 2), grads.permute(0, 3, 1, 2)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * fmap).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    cam = cam - cam.amin(dim=(1, 2), keepdim=True)
    cam = cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(1e-8)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return cam.cpu().numpy()
