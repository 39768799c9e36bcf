"""SASRec: a causal transformer over a user's item sequence, scored against item embeddings.

``model.backbone`` (`SASRecEncoder`) holds the item embedding table, the position
embeddings and the transformer blocks; its top-level children in order are the stages the
core's strategies unfreeze. ``model.head`` (`ScoringHead`) maps the last hidden state to a
query and scores it against the (tied) item embeddings plus a per-item bias.

Histories are left-padded with 0. Positions count back from the most recent item, so a
history of any length, and the ONNX graph with a dynamic sequence axis, see the same
position embedding for "the last item".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tl.core import ConfigError
from torch import nn

MASK_VALUE = -1e9


@dataclass
class SASRecConfig:
    """The architecture (saved with the weights); the defaults live in the plugin's options."""

    n_items: int
    d_model: int
    n_layers: int
    n_heads: int
    max_len: int
    dropout: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class CausalBlock(nn.Module):
    """Pre-norm self-attention + feed-forward block (explicit ops, so ONNX export is plain)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ConfigError(
                f"--d-model {d_model} is not divisible by --heads {n_heads}",
                "--d-model",
                "pick a multiple of --heads, e.g. --d-model 64 --heads 2",
            )
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.attn_norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.ff_norm = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(self, h: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, width = h.shape
        q, k, v = self.qkv(self.attn_norm(h)).chunk(3, dim=-1)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, length, self.n_heads, self.head_dim).transpose(1, 2)

        q, k, v = split(q), split(k), split(v)
        logits = q @ k.transpose(-1, -2) * self.head_dim**-0.5
        logits = logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
        attn = F.dropout(logits.softmax(dim=-1), self.dropout, self.training)
        mixed = (attn @ v).transpose(1, 2).reshape(batch, length, width)
        h = h + F.dropout(self.out(mixed), self.dropout, self.training)
        return h + F.dropout(self.ff(self.ff_norm(h)), self.dropout, self.training)


class SASRecEncoder(nn.Module):
    """Item + position embeddings and causal blocks: ``(B, T)`` item indices → ``(B, T', d)``
    hidden states, ``T' = min(T, max_len)`` (the most recent items)."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.config = config
        self.item_embedding = nn.Embedding(config.n_items + 1, config.d_model, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_len, config.d_model)
        for i in range(config.n_layers):
            self.add_module(
                f"block{i}", CausalBlock(config.d_model, config.n_heads, config.dropout)
            )
        self.norm = nn.LayerNorm(config.d_model)
        nn.init.normal_(self.item_embedding.weight, std=config.d_model**-0.5)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    @property
    def blocks(self) -> list[CausalBlock]:
        return [m for m in self.children() if isinstance(m, CausalBlock)]

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        x = history[:, -self.config.max_len :]
        length = x.shape[1]
        order = torch.arange(length, device=x.device)
        back = order.flip(0)
        h = self.item_embedding(x) * math.sqrt(self.config.d_model)
        h = h + self.position_embedding(back)
        valid = x != 0
        h = F.dropout(h, self.config.dropout, self.training) * valid.unsqueeze(-1)
        causal = order.unsqueeze(1) >= order.unsqueeze(0)
        # a padded query attends to itself only, so no row of the softmax is empty
        allowed = (causal & valid.unsqueeze(1)) | (order.unsqueeze(1) == order.unsqueeze(0))
        allowed = allowed.unsqueeze(1)
        for block in self.blocks:
            h = block(h, allowed)
        return self.norm(h)


class ScoringHead(nn.Module):
    """Query projection (initialised to identity) + per-item bias, scored against the
    backbone's item embeddings: ``score = proj(h) · E_i + b_i``."""

    def __init__(self, d_model: int, n_items: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)
        self.item_bias = nn.Parameter(torch.zeros(n_items + 1))
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(d_model))
            self.proj.bias.zero_()

    def query(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h)

    def score(self, query: torch.Tensor, item_weight: torch.Tensor) -> torch.Tensor:
        return query @ item_weight.t() + self.item_bias


class SASRec(nn.Module):
    """``forward(history)`` → scores of every item (index 0 = padding) for the next step."""

    def __init__(self, config: SASRecConfig, loss: str = "full", negatives: int = 256) -> None:
        super().__init__()
        self.config = config
        self.loss_kind = loss
        self.negatives = negatives
        self.backbone = SASRecEncoder(config)
        self.head = ScoringHead(config.d_model, config.n_items)
        #: what ``adapt_weights`` moved from a source catalogue into this model (report.md)
        self.transfer_summary: dict[str, Any] | None = None

    @property
    def item_weight(self) -> torch.Tensor:
        return self.backbone.item_embedding.weight

    def user_query(self, history: torch.Tensor) -> torch.Tensor:
        return self.head.query(self.backbone(history)[:, -1])

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        return self.head.score(self.user_query(history), self.item_weight)
