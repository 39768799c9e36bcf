"""Batches, the next-item loss and the full-ranking evaluation step (torch)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import sequences
from .model import SASRec

TOP_K = 10


def left_pad(rows: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(sequences.left_pad(rows))


def collate(items: list[Any]) -> dict[str, torch.Tensor]:
    """Training windows → ``inputs``/``targets``; evaluation users → history/seen/target."""
    if isinstance(items[0], dict):
        return {
            "history": left_pad([it["history"] for it in items]),
            "seen": left_pad([it["seen"] for it in items]),
            "target": torch.tensor([it["target"] for it in items], dtype=torch.int64),
            "user": torch.tensor([it["user"] for it in items], dtype=torch.int64),
        }
    windows = left_pad(list(items))
    return {"inputs": windows[:, :-1], "targets": windows[:, 1:]}


def next_item_loss(model: SASRec, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every non-padded next item: over the whole catalogue (``full``) or
    against ``model.negatives`` uniformly sampled items shared by the batch (``sampled``)."""
    hidden = model.backbone(inputs)
    targets = targets[:, -hidden.shape[1] :]
    valid = targets != 0
    query = model.head.query(hidden[valid])
    target = targets[valid]
    weight, bias = model.item_weight, model.head.item_bias
    if model.loss_kind == "sampled":
        n_items = weight.shape[0] - 1
        negatives = torch.randint(1, n_items + 1, (model.negatives,), device=query.device)
        positive = (query * weight[target]).sum(-1, keepdim=True) + bias[target].unsqueeze(-1)
        negative = query @ weight[negatives].t() + bias[negatives]
        collide = negatives.unsqueeze(0) == target.unsqueeze(1)
        negative = negative.masked_fill(collide, torch.finfo(negative.dtype).min)
        logits = torch.cat([positive, negative], dim=1)
        return F.cross_entropy(logits, torch.zeros_like(target))
    logits = query @ weight.t() + bias
    logits[:, 0] = torch.finfo(logits.dtype).min
    return F.cross_entropy(logits, target)


def training_step(model: SASRec, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return next_item_loss(model, batch["inputs"], batch["targets"])


@torch.no_grad()
def rank_step(model: SASRec, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """0-based rank of each target among all items outside the user's history, plus the
    unmasked cross-entropy and the top-10 (used for test_predictions.csv)."""
    with torch.autocast(batch["history"].device.type, enabled=False):  # ranks need fp32 ties
        scores = model(batch["history"]).float()
    scores[:, 0] = float("-inf")
    target = batch["target"]
    loss = F.cross_entropy(scores.masked_fill(scores.isinf(), -1e9), target, reduction="none")
    scores = scores.scatter(1, batch["seen"], float("-inf"))
    target_score = scores.gather(1, target.unsqueeze(1))
    rank = (scores > target_score).sum(dim=1).to(torch.float32)
    rank = rank.masked_fill(target_score.squeeze(1).isinf(), float("inf"))
    top = scores.topk(min(TOP_K, scores.shape[1] - 1), dim=1).indices
    return {"rank": rank, "loss": loss, "top": top, "user": batch["user"]}
