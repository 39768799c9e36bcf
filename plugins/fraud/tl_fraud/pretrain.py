"""Self-supervised pretraining of the encoder on unlabelled transactions.

Two objectives, used together by default (``--ssl both``):

- SCARF (Bahri et al., 2022): a random subset of each row's features is replaced by the
  same features of other rows (sampling from the empirical marginals); the [CLS] vectors of
  two views of a row must find each other among the batch (InfoNCE).
- Masked-feature reconstruction (VIME-style): features are hidden exactly the way missing
  values are (NaN → the learned missing token, category → unknown code 0) and the encoder
  predicts the hidden values from the other columns — scaled numeric values by regression,
  categories by classification over the column's vocabulary.

Only ``backbone`` is kept afterwards; the projection and reconstruction heads are dropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tl.core import ConfigError
from torch import nn

from .model import Architecture, FTTransformer
from .schema import TableSchema

SSL_MODES = ("both", "scarf", "mask")


class SelfSupervisedModel(nn.Module):
    def __init__(
        self,
        schema: TableSchema,
        arch: Architecture,
        mode: str = "both",
        corruption: float = 0.4,
        mask_rate: float = 0.3,
        temperature: float = 0.2,
    ) -> None:
        super().__init__()
        if mode not in SSL_MODES:
            raise ConfigError(
                f"unknown --ssl '{mode}'", "--ssl", f"use one of {', '.join(SSL_MODES)}"
            )
        d = arch.d_token
        self.mode, self.corruption, self.mask_rate, self.temperature = (
            mode,
            corruption,
            mask_rate,
            temperature,
        )
        self.backbone = FTTransformer(schema, arch)
        self.projection = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        n_num, cardinalities = len(schema.numeric), schema.cardinalities
        self.numeric_head = nn.Parameter(torch.randn(n_num, d) / d**0.5)
        self.numeric_head_bias = nn.Parameter(torch.zeros(n_num))
        self.category_head = nn.Linear(d, max(1, sum(cardinalities)))
        owner = torch.repeat_interleave(
            torch.arange(len(cardinalities)), torch.tensor(cardinalities, dtype=torch.long)
        )
        self.register_buffer(
            "category_mask",
            owner.unsqueeze(0) == torch.arange(len(cardinalities)).unsqueeze(1),
            persistent=False,
        )

    # ---------------------------------------------------------------- views
    def corrupt(
        self, numeric: torch.Tensor, categorical: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Replace each feature with probability ``corruption`` by another row's value."""
        batch = numeric.shape[0]

        def swap(values: torch.Tensor) -> torch.Tensor:
            donors = torch.randint(0, batch, values.shape, device=values.device)
            other = torch.gather(values, 0, donors)
            return torch.where(
                torch.rand(values.shape, device=values.device) < self.corruption, other, values
            )

        return swap(numeric), swap(categorical)

    def mask(self, numeric: torch.Tensor, categorical: torch.Tensor):
        hide_num = torch.rand(numeric.shape, device=numeric.device) < self.mask_rate
        hide_cat = torch.rand(categorical.shape, device=categorical.device) < self.mask_rate
        masked_num = torch.where(hide_num, torch.full_like(numeric, float("nan")), numeric)
        masked_cat = torch.where(hide_cat, torch.zeros_like(categorical), categorical)
        return masked_num, masked_cat, hide_num, hide_cat

    # ---------------------------------------------------------------- losses
    def contrastive(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        za = F.normalize(self.projection(a), dim=-1)
        zb = F.normalize(self.projection(b), dim=-1)
        logits = za @ zb.T / self.temperature
        labels = torch.arange(len(za), device=za.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))

    def reconstruction(self, tokens, numeric, categorical, hide_num, hide_cat) -> torch.Tensor:
        tokenizer = self.backbone.tokenizer
        n_num = tokenizer.n_numeric
        loss = tokens.new_zeros(())
        if n_num:
            scaled, missing = tokenizer.scale_numeric(numeric)
            predicted = (tokens[:, :n_num] * self.numeric_head).sum(-1) + self.numeric_head_bias
            use = hide_num & ~missing
            if use.any():
                loss = loss + F.mse_loss(predicted[use], scaled[use])
        if tokenizer.n_categorical:
            logits = self.category_head(tokens[:, n_num:])
            logits = logits.masked_fill(~self.category_mask, float("-inf"))
            use = hide_cat & (categorical > 0)
            if use.any():
                target = (categorical + tokenizer.cat_offsets)[use]
                loss = loss + F.cross_entropy(logits[use], target)
        return loss

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """The pretraining loss of one batch."""
        loss = numeric.new_zeros(())
        masked_num, masked_cat, hide_num, hide_cat = self.mask(numeric, categorical)
        if self.mode in ("both", "mask"):
            tokens = self.backbone.forward_tokens(masked_num, masked_cat)
            loss = loss + self.reconstruction(
                tokens[:, 1:], numeric, categorical, hide_num, hide_cat
            )
            masked_cls = tokens[:, 0]
        if self.mode in ("both", "scarf"):
            view = self.backbone(*self.corrupt(numeric, categorical))
            other = (
                masked_cls
                if self.mode == "both"
                else self.backbone(*self.corrupt(numeric, categorical))
            )
            loss = loss + self.contrastive(view, other)
        return loss


def ssl_training_step(model: SelfSupervisedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch["numeric"], batch["categorical"])


def ssl_predict_step(
    model: SelfSupervisedModel, batch: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    return {"loss": model(batch["numeric"], batch["categorical"])}


def ssl_metrics(outputs: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    losses = [float(o["loss"]) for o in outputs]
    return {"loss": sum(losses) / max(1, len(losses))}
