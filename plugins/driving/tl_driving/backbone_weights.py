"""Plain timm backbone weights (a `tl pretrain driving` SimCLR output, a classifier run)
→ the detector's ``features_only`` backbone.

timm's feature wrappers rename modules (FeatureListNet flattens ``stages.0`` into
``stages_0``) and drop what follows the last feature map (``conv_head``). Rather than
re-implement those rules per wrapper, timm itself builds the features-only model from a
*tagged* copy of the weights (every tensor filled with its own number) and we read back
where each number landed: that is exactly the mapping timm applies when it loads
pretrained weights into ``features_only=True``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

PREFIX = "backbone."
# above every constant a fresh init writes (BatchNorm's ones and zeros), exact in float32
TAG_OFFSET = 1000


@contextmanager
def _quiet(name: str = "timm"):
    """timm logs the expected missing/unexpected keys of a features-only load as warnings."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _tag(tensor: torch.Tensor, value: int) -> torch.Tensor:
    dtype = torch.float64 if tensor.is_floating_point() else torch.int64
    return torch.full(tensor.shape, value, dtype=dtype)


def _read_tag(tensor: torch.Tensor, count: int) -> int | None:
    flat = tensor.detach().reshape(-1)
    if flat.numel() == 0 or not bool((flat == flat[0]).all()):
        return None
    value = float(flat[0])
    index = int(value) - TAG_OFFSET
    return index if value.is_integer() and 0 <= index < count else None


def feature_key_map(
    name: str, out_indices: Sequence[int], plain: dict[str, torch.Tensor]
) -> dict[str, str]:
    """``{features_only key: plain key}`` as timm maps them for ``name``.

    Raises timm's RuntimeError when the weights do not fit ``name`` (another architecture).
    """
    import timm

    keys = sorted(k for k, v in plain.items() if v.numel() > 0)
    tagged = {k: _tag(plain[k], TAG_OFFSET + i) for i, k in enumerate(keys)}
    with _quiet():
        model = timm.create_model(
            name,
            pretrained=True,
            pretrained_cfg_overlay={"state_dict": tagged},
            features_only=True,
            out_indices=tuple(out_indices),
        )
    mapping = {}
    for key, tensor in model.state_dict().items():
        index = _read_tag(tensor, len(keys))
        if index is not None and plain[keys[index]].numel() == tensor.numel():
            mapping[key] = keys[index]
    return mapping


def to_feature_backbone(
    state: dict[str, torch.Tensor], model: nn.Module, name: str, out_indices: Sequence[int]
) -> dict[str, torch.Tensor]:
    """Rename a plain timm ``backbone.*`` state to ``model``'s features-only backbone.

    Weights already named like ``model`` (an earlier detector run) pass unchanged, and so do
    weights of another architecture (the core then loads whatever fits by name). Tensors the
    detector does not use (``conv_head``) keep their names, so the load summary counts them
    as skipped instead of dropping them silently.
    """
    wanted = [k for k in model.state_dict() if k.startswith(PREFIX)]
    if all(k in state for k in wanted):
        return state
    plain = {k[len(PREFIX) :]: v for k, v in state.items() if k.startswith(PREFIX)}
    if not plain:
        return state
    try:
        mapping = feature_key_map(name, out_indices, plain)
    except (RuntimeError, ValueError, KeyError):
        return state
    shapes = {k[len(PREFIX) :]: v.shape for k, v in model.state_dict().items() if k in wanted}
    used = set(mapping.values())
    out = {k: v for k, v in state.items() if not k.startswith(PREFIX)}
    out.update({PREFIX + k: v for k, v in plain.items() if k not in used})
    out.update({PREFIX + f: plain[p].reshape(shapes[f]) for f, p in mapping.items() if f in shapes})
    return out


def architecture(model: Any) -> str | None:
    """The timm model name a detector's backbone was built from."""
    config = getattr(getattr(model, "backbone", None), "pretrained_cfg", None) or {}
    return config.get("architecture")
