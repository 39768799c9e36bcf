"""Copies of a model's tensors taken when an epoch ends, for files written while training
goes on changing the originals (`tl.core.checkpoints.CheckpointStore.save` in the
background, the best epoch's weights kept in memory)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

_Key = tuple[int, torch.dtype, tuple[int, ...], tuple[int, ...], torch.device]


def model_storages(model: nn.Module) -> set[int]:
    """The storage pointers of ``model``'s state dict (`ModelSnapshots.take`'s ``live``)."""
    model = getattr(model, "module", model)
    return {t.untyped_storage().data_ptr() for t in model.state_dict().values()}


def snapshot(value: Any, live: set[int] | None = None) -> Any:
    """``value`` (nested dicts, lists, tuples) with every tensor copied to CPU. With
    ``live`` (storage pointers), only tensors on those storages are copied; the others
    (made for saving, owned by nobody else) are taken as they are."""
    if isinstance(value, torch.Tensor):
        if live is not None and value.untyped_storage().data_ptr() not in live:
            return value
        return _copied(value)
    if isinstance(value, dict):
        return {k: snapshot(v, live) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(snapshot(v, live) for v in value)
    return value


class ModelSnapshots:
    """Tensors copied to CPU. The copy of a tensor outside the part that trained since the
    previous `take` (the backbone while a linear probe trains on cached features, which
    the training step never reaches) is that take's copy, not a new one:
    a frozen backbone is copied once per fit instead of every epoch. Version counters
    cannot tell this: fused optimizers and BatchNorm's running statistics write in place
    without bumping them."""

    def __init__(self) -> None:
        # key -> (the tensor, pinning its memory so that no other takes its key; its copy)
        self._kept: dict[_Key, tuple[torch.Tensor, torch.Tensor]] = {}

    def take(
        self, state: dict[str, torch.Tensor], model: nn.Module, trained: nn.Module
    ) -> dict[str, torch.Tensor]:
        """``state`` (the tensors a checkpoint of ``model`` holds) copied to CPU where it
        is ``model``'s own memory (tensors made for saving are taken as they are).
        ``trained``: the part of ``model`` that trained since the previous take (the
        epoch's step model); the copies of the rest are the previous take's."""
        live = model_storages(model)
        unchanged = live - model_storages(trained) if trained is not model else set()
        kept, self._kept = self._kept, {}
        out: dict[str, torch.Tensor] = {}
        for name, value in state.items():
            storage = value.untyped_storage().data_ptr()
            if storage not in live:
                out[name] = value
                continue
            if storage not in unchanged:
                out[name] = _copied(value)
                continue
            key = (
                value.data_ptr(), value.dtype, tuple(value.shape), tuple(value.stride()),
                value.device,
            )  # fmt: skip
            out[name] = kept[key][1] if key in kept else _copied(value)
            self._kept[key] = (value.detach(), out[name])
        return out

    def clear(self) -> None:
        self._kept.clear()


def _copied(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu", copy=True).contiguous()
