"""Backbones over timm, and where their weights come from.

``--weights`` is one of ``hub`` (timm's pretrained download), ``none`` (random init),
a local ``.safetensors``/``.pth`` state dict (timm's own file loader, so ``in_chans``
adaptation and classifier reset work), or something tl wrote: a run directory, a
checkpoint, or a ``tl pretrain`` output. tl's own files are applied after the plugin has
built its model (`load_tl_weights`), because only the whole model knows which tensors fit.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ConfigError, WeightsError
from .weights_file import TL_WEIGHTS_KEY, read_safetensors_metadata

HUB_HOST = ("huggingface.co", 443)


@dataclass
class BackboneSpec:
    """Which backbone and which weights. ``weights``: hub | none | a path."""

    name: str
    weights: str = "none"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def tl_weights(self) -> Path | None:
        """The safetensors file tl wrote, when ``weights`` points at one (else None)."""
        if self.weights in ("hub", "none"):
            return None
        return find_tl_weights(Path(self.weights))


def find_tl_weights(path: Path) -> Path | None:
    """Resolve a run dir / pretrain dir / tl checkpoint to its safetensors file."""
    if path.is_dir():
        for candidate in (
            path / "backbone.safetensors",
            path / "checkpoints" / "best.safetensors",
            path / "checkpoints" / "last.safetensors",
        ):
            if candidate.exists():
                return candidate
        raise WeightsError(
            "the folder holds no tl weights",
            path,
            "pass a run directory of `tl run`, an output of `tl pretrain`, or a weights file",
        )
    if not path.exists():
        raise WeightsError(
            "weights file not found", path, "check the path, or use --weights none / hub"
        )
    if path.suffix == ".safetensors" and TL_WEIGHTS_KEY in read_safetensors_metadata(path):
        return path
    return None


def hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def check_model_name(name: str) -> None:
    import timm

    if timm.is_model(name):
        return
    import difflib

    close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "see `timm.list_models()`"
    raise ConfigError(f"unknown backbone '{name}'", "--backbone", hint)


def create_backbone(
    spec: BackboneSpec, image_size: int | None = None, **timm_kwargs: Any
) -> nn.Module:
    """``timm.create_model(spec.name, **timm_kwargs)`` with the weights ``spec`` asks for.

    Pass ``num_classes=0`` for a pooled feature extractor or ``features_only=True`` for a
    feature pyramid; ``in_chans`` adapts the first convolution of pretrained weights.
    ``image_size`` builds models with a fixed input size (ViT, Swin …) for that size
    (timm resamples pretrained position embeddings); other models ignore it.
    tl's own weight files are not loaded here (see `load_tl_weights`).
    """
    import timm

    check_model_name(spec.name)
    weights = spec.weights
    kwargs = dict(timm_kwargs)
    if image_size and "img_size" not in kwargs and _fixed_input_size(spec.name):
        kwargs["img_size"] = int(image_size)
    if weights == "hub":
        if not hub_reachable():
            raise WeightsError(
                f"cannot download pretrained weights for {spec.name}: the model hub is unreachable",
                "--weights hub",
                "go online, or use --weights PATH (a local file) or --weights none",
            )
        try:
            return timm.create_model(spec.name, pretrained=True, **kwargs)
        except RuntimeError as exc:
            raise WeightsError(
                f"timm has no pretrained weights for {spec.name}: {str(exc)[:120]}",
                "--weights hub",
                "pick a model with weights (timm.list_pretrained()) or use --weights none",
            ) from exc
        except OSError as exc:
            raise WeightsError(
                f"downloading pretrained weights for {spec.name} failed",
                "--weights hub",
                "check the network, or use --weights PATH / none",
            ) from exc
    if weights == "none" or spec.tl_weights is not None:
        return timm.create_model(spec.name, pretrained=False, **kwargs)
    path = Path(weights)
    if path.suffix not in (".safetensors", ".pth", ".pt", ".bin"):
        raise WeightsError(
            "unsupported weights file type", path, "use a .safetensors or .pth state dict"
        )
    try:
        return timm.create_model(
            spec.name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
        )
    except (RuntimeError, KeyError, ValueError) as exc:
        raise WeightsError(
            f"the weights do not fit {spec.name}: {str(exc).splitlines()[0][:160]}",
            path,
            "use weights saved from the same architecture, or pick the matching --backbone",
        ) from exc
    except Exception as exc:  # pickle errors from weights_only=True, corrupt files
        raise WeightsError(
            f"cannot read the weights file ({type(exc).__name__})",
            path,
            "use a .safetensors file or a plain state dict saved with torch.save",
        ) from exc


def is_vit(model_or_backbone: nn.Module) -> bool:
    """Whether a backbone — or a model's ``.backbone`` — is a timm ``VisionTransformer``
    (its tokens take prompts, its attention/MLP layers are lora's default targets)."""
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model_or_backbone, VisionTransformer):
        return True
    return isinstance(getattr(model_or_backbone, "backbone", None), VisionTransformer)


def _fixed_input_size(name: str) -> bool:
    """Whether timm builds ``name`` for one input size (its ``img_size`` argument)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return bool(cfg is not None and cfg.fixed_input_size)


def data_config(
    model: nn.Module, image_size: int | None = None, in_chans: int | None = None
) -> dict[str, Any]:
    """timm's data config (mean, std, input size, interpolation) for ``model``.

    The pretrained config describes the weights' source (3 channels for ImageNet); the
    channel count of *this* model comes from ``in_chans`` or its first convolution.
    """
    from timm.data import resolve_model_data_config

    config = dict(resolve_model_data_config(model))
    if in_chans is None:
        first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        in_chans = first_conv.in_channels if first_conv is not None else config["input_size"][0]
    mean, std = tuple(config["mean"]), tuple(config["std"])
    if len(mean) != in_chans:  # 1-channel models: average the RGB statistics
        mean = (sum(mean) / len(mean),) * in_chans
        std = (sum(std) / len(std),) * in_chans
    config["mean"], config["std"] = mean, std
    size = image_size or config["input_size"][-1]
    config["input_size"] = (in_chans, size, size)
    return config


def load_tl_weights(model: nn.Module, path: Path, adapt: Any = None) -> dict[str, Any]:
    """Copy every tensor of tl's weights file whose name and shape match ``model``.

    ``adapt(state_dict, meta)`` may rewrite the state dict first (plugin hook). Returns a
    summary: loaded / skipped names, source metadata, and ``skipped_tensors`` (the tensors
    that did not fit, for a strategy that adds them later: prompt tokens). At least one
    backbone tensor must fit.
    """
    from safetensors.torch import load_file

    meta = read_safetensors_metadata(path).get(TL_WEIGHTS_KEY, {})
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise WeightsError("cannot read the weights file", path, "re-create it") from exc
    if adapt is not None:
        state = adapt(state, meta)
    own = model.state_dict()
    fitting, skipped = {}, []
    for key, tensor in state.items():
        if key in own and own[key].shape != tensor.shape:
            tensor = _adapt_input_channels(tensor, own[key].shape)
        if key in own and own[key].shape == tensor.shape:
            fitting[key] = tensor
        else:
            skipped.append(key)
    if not any(k.startswith("backbone.") for k in fitting):
        raise WeightsError(
            "no backbone tensor in the weights fits this model",
            path,
            f"use weights of the same backbone ({meta.get('backbone', 'unknown')} was saved)",
        )
    with torch.no_grad():
        for key, tensor in fitting.items():
            own[key].copy_(tensor)
    return {
        "source": str(path),
        "loaded": len(fitting),
        "skipped": skipped,
        "skipped_tensors": {k: state[k] for k in skipped},
        "meta": meta,
    }


def _adapt_input_channels(weight: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A first-conv weight saved for C channels, reused for C' (timm's rule: sum or repeat)."""
    if weight.ndim != 4 or len(shape) != 4 or weight.shape[0] != shape[0]:
        return weight
    if weight.shape[2:] != shape[2:]:
        return weight
    from timm.models import adapt_input_conv

    try:
        return adapt_input_conv(shape[1], weight)
    except NotImplementedError:
        return weight
