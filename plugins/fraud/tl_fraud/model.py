"""The tabular network: a feature tokenizer and an FT-Transformer encoder, plus the head.

The model takes the *raw* runtime inputs — ``numeric`` float32 with NaN for missing and
``categorical`` int64 codes (0 = unknown) — so scaling, imputation and embeddings live in
the module and therefore in the exported ONNX graph, with nothing to re-implement at
serving time. Every per-feature tensor has one row per column, in the schema's order,
which is what lets `transfer.adapt_state_dict` move weights between tables by column name.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tl.core import ConfigError
from torch import nn

from .schema import CLIP, TableSchema


@dataclass(frozen=True)
class Architecture:
    """Size of the encoder; saved with the weights so fine-tuning rebuilds the same shape."""

    d_token: int = 64
    n_blocks: int = 2
    n_heads: int = 4
    ffn_factor: float = 2.0
    n_frequencies: int = 16
    frequency_scale: float = 0.5
    attention_dropout: float = 0.1
    ffn_dropout: float = 0.1

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> Architecture:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class FeatureTokenizer(nn.Module):
    """One ``d_token`` vector per feature.

    Numeric: optional log1p, robust scaling and clipping, then a periodic encoding
    (sin/cos of learned frequencies) → per-feature linear → ReLU ("PLR" embeddings of
    Gorishniy et al., 2022); a missing value becomes the feature's learned missing token.
    Categorical: one embedding table for all columns (offsets per column) plus a per-column
    bias; codes outside a column's vocabulary fall back to its unknown row 0.
    """

    def __init__(self, schema: TableSchema, arch: Architecture) -> None:
        super().__init__()
        d, k = arch.d_token, arch.n_frequencies
        n_num, cardinalities = len(schema.numeric), schema.cardinalities
        self.n_numeric, self.n_categorical = n_num, len(cardinalities)
        stats = schema.numeric
        self.register_buffer(
            "num_center", torch.tensor([f.center for f in stats], dtype=torch.float32)
        )
        self.register_buffer(
            "num_scale", torch.tensor([f.scale for f in stats], dtype=torch.float32)
        )
        self.register_buffer("num_log", torch.tensor([f.log for f in stats], dtype=torch.bool))
        self.num_frequencies = nn.Parameter(torch.randn(n_num, k) * arch.frequency_scale)
        self.num_weight = nn.Parameter(torch.empty(n_num, 2 * k, d))
        self.num_bias = nn.Parameter(torch.zeros(n_num, d))
        self.num_missing = nn.Parameter(torch.empty(n_num, d))
        offsets = [0, *torch.tensor(cardinalities, dtype=torch.long).cumsum(0).tolist()[:-1]]
        self.register_buffer(
            "cat_offsets", torch.tensor(offsets[: len(cardinalities)], dtype=torch.long)
        )
        self.register_buffer("cat_sizes", torch.tensor(cardinalities, dtype=torch.long))
        self.cat_embedding = nn.Embedding(max(1, sum(cardinalities)), d)
        self.cat_bias = nn.Parameter(torch.zeros(len(cardinalities), d))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.num_weight.shape[1] or 1)
        nn.init.uniform_(self.num_weight, -bound, bound)
        nn.init.normal_(self.num_missing, std=0.02)
        nn.init.normal_(
            self.cat_embedding.weight, std=1 / math.sqrt(self.cat_embedding.embedding_dim)
        )

    def scale_numeric(self, numeric: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scaled values with missing → 0, missing mask); the graph's imputation step."""
        missing = torch.isnan(numeric)
        x = torch.where(missing, torch.zeros_like(numeric), numeric)
        x = torch.where(self.num_log, torch.log1p(torch.clamp(x, min=0.0)), x)
        x = torch.clamp((x - self.num_center) / self.num_scale, -CLIP, CLIP)
        return torch.where(missing, torch.zeros_like(x), x), missing

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        tokens = []
        if self.n_numeric:
            x, missing = self.scale_numeric(numeric)
            angles = 2 * math.pi * self.num_frequencies * x.unsqueeze(-1)
            periodic = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
            embedded = torch.relu(
                torch.einsum("bnk,nkd->bnd", periodic, self.num_weight) + self.num_bias
            )
            tokens.append(
                torch.where(missing.unsqueeze(-1), self.num_missing.expand_as(embedded), embedded)
            )
        if self.n_categorical:
            valid = (categorical >= 0) & (categorical < self.cat_sizes)
            codes = torch.where(valid, categorical, torch.zeros_like(categorical))
            tokens.append(self.cat_embedding(codes + self.cat_offsets) + self.cat_bias)
        return torch.cat(tokens, dim=1)


class Block(nn.Module):
    """Pre-norm transformer block (plain ops, so both ONNX exporters handle it)."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        d, hidden = arch.d_token, int(arch.d_token * arch.ffn_factor)
        self.n_heads = arch.n_heads
        self.attention_norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.attention_dropout = nn.Dropout(arch.attention_dropout)
        self.ffn_norm = nn.LayerNorm(d)
        self.ffn = nn.Sequential(
            nn.Linear(d, hidden), nn.GELU(), nn.Dropout(arch.ffn_dropout), nn.Linear(hidden, d)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, d = x.shape
        head_dim = d // self.n_heads
        qkv = self.qkv(self.attention_norm(x)).reshape(batch, length, 3, self.n_heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(head_dim), dim=-1)
        attended = (self.attention_dropout(weights) @ v).transpose(1, 2).reshape(batch, length, d)
        x = x + self.out(attended)
        return x + self.ffn(self.ffn_norm(x))


class FTTransformer(nn.Module):
    """Tokenizer → [CLS] + feature tokens → transformer blocks → normalised [CLS] vector."""

    def __init__(self, schema: TableSchema, arch: Architecture) -> None:
        super().__init__()
        if arch.d_token % arch.n_heads:
            raise ConfigError(
                f"--d-token {arch.d_token} is not divisible by --n-heads {arch.n_heads}",
                "--d-token",
                "pick a multiple of --n-heads, e.g. --d-token 64 --n-heads 4",
            )
        self.tokenizer = FeatureTokenizer(schema, arch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, arch.d_token) * 0.02)
        self.blocks = nn.ModuleList(Block(arch) for _ in range(arch.n_blocks))
        self.norm = nn.LayerNorm(arch.d_token)
        self.num_features = arch.d_token

    def group_matcher(self, coarse: bool = False) -> dict[str, object]:
        """timm-style stages for the freezing strategies: tokenizer, each block, final norm."""
        return {
            "stem": r"^tokenizer|^cls_token",
            "blocks": [(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
        }

    def forward_tokens(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        tokens = self.tokenizer(numeric, categorical)
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return self.forward_tokens(numeric, categorical)[:, 0]


class FraudModel(nn.Module):
    """``backbone`` (FT-Transformer) + ``head`` → one fraud logit per row.

    What the run's later steps need about this very model travels with it: ``arch`` (saved
    with its weights), ``loss`` (set by the plugin) and ``transfer`` (what
    `transfer.adapt_state_dict` moved from pretrained weights, None without them).
    """

    def __init__(self, schema: TableSchema, arch: Architecture, dropout: float = 0.1) -> None:
        super().__init__()
        self.arch = arch
        self.transfer: dict[str, Any] | None = None
        self.backbone = FTTransformer(schema, arch)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(arch.d_token, 1))

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(numeric, categorical)).squeeze(-1)


class ProbabilityModel(nn.Module):
    """What is exported: raw inputs → ``probability`` of fraud."""

    def __init__(self, model: FraudModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(numeric, categorical))
