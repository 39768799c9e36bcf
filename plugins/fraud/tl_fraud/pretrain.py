"""Self-supervised pretraining of the encoder on unlabelled transactions.

``--ssl mask`` (default) — masked-feature reconstruction through the [CLS] token, a
denoising autoencoder in the VIME spirit: 30 % of the values are hidden exactly the way
missing values are (NaN → the feature's learned missing token, category → unknown code 0)
and the [CLS] vector of the masked row must reconstruct *every* known value of the original
row (scaled numbers by regression, categories by classification over the column's
vocabulary). Routing the reconstruction through [CLS] makes it a summary of the whole row —
the vector the fraud head reads later. (Reconstructing each value from its own token left
[CLS] untrained: a logistic-regression probe on it was no better than a random encoder.)

``--ssl scarf`` — SCARF (Bahri et al., 2022): 40 % of each row's values are replaced by
the same columns of other rows; the [CLS] vectors of two views of a row must find each
other in the batch (InfoNCE). ``--ssl both`` adds the two losses.

Only ``backbone`` is kept afterwards; the pretext heads are dropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tl.core import ConfigError
from torch import nn

from .model import Architecture, FTTransformer
from .schema import TableSchema

SSL_MODES = ("mask", "scarf", "both")


class PretextHeads(nn.Module):
    """Projection for the contrastive loss and per-feature reconstruction heads."""

    def __init__(self, schema: TableSchema, d: int) -> None:
        super().__init__()
        n_num, cardinalities = len(schema.numeric), schema.cardinalities
        self.projection = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        self.numeric = nn.Parameter(torch.randn(n_num, d) / d**0.5)
        self.numeric_bias = nn.Parameter(torch.zeros(n_num))
        self.category = nn.Linear(d, max(1, sum(cardinalities)))
        owner = torch.repeat_interleave(
            torch.arange(len(cardinalities)), torch.tensor(cardinalities, dtype=torch.long)
        )
        self.register_buffer(
            "category_mask",
            owner.unsqueeze(0) == torch.arange(len(cardinalities)).unsqueeze(1),
            persistent=False,
        )


class SelfSupervisedModel(nn.Module):
    def __init__(
        self,
        schema: TableSchema,
        arch: Architecture,
        mode: str = "mask",
        corruption: float = 0.4,
        mask_rate: float = 0.3,
        temperature: float = 0.2,
    ) -> None:
        super().__init__()
        if mode not in SSL_MODES:
            raise ConfigError(
                f"unknown --ssl '{mode}'", "--ssl", f"use one of {', '.join(SSL_MODES)}"
            )
        self.mode, self.corruption, self.mask_rate, self.temperature = (
            mode,
            corruption,
            mask_rate,
            temperature,
        )
        self.backbone = FTTransformer(schema, arch)
        self.head = PretextHeads(schema, arch.d_token)

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

    def mask(
        self, numeric: torch.Tensor, categorical: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hide each value with probability ``mask_rate`` exactly as a missing one."""
        hide_num = torch.rand(numeric.shape, device=numeric.device) < self.mask_rate
        hide_cat = torch.rand(categorical.shape, device=categorical.device) < self.mask_rate
        masked_num = torch.where(hide_num, torch.full_like(numeric, float("nan")), numeric)
        masked_cat = torch.where(hide_cat, torch.zeros_like(categorical), categorical)
        return masked_num, masked_cat

    # ---------------------------------------------------------------- losses
    def contrastive(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        za = F.normalize(self.head.projection(a), dim=-1)
        zb = F.normalize(self.head.projection(b), dim=-1)
        logits = za @ zb.T / self.temperature
        labels = torch.arange(len(za), device=za.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))

    def reconstruction(
        self, cls: torch.Tensor, numeric: torch.Tensor, categorical: torch.Tensor
    ) -> torch.Tensor:
        """Every known value of the original row, predicted from the masked row's [CLS]."""
        tokenizer = self.backbone.tokenizer
        n_num = tokenizer.n_numeric
        loss = cls.new_zeros(())
        if n_num:
            scaled, missing = tokenizer.scale_numeric(numeric)
            predicted = cls @ self.head.numeric.T + self.head.numeric_bias
            use = ~missing
            if use.any():
                loss = loss + F.mse_loss(predicted[use], scaled[use])
        if tokenizer.n_categorical:
            per_column = cls.unsqueeze(1).expand(-1, tokenizer.n_categorical, -1)
            logits = self.head.category(per_column)
            logits = logits.masked_fill(~self.head.category_mask, float("-inf"))
            use = categorical > 0
            if use.any():
                target = (categorical + tokenizer.cat_offsets)[use]
                loss = loss + F.cross_entropy(logits[use], target)
        return loss

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """The pretraining loss of one batch."""
        loss = numeric.new_zeros(())
        masked_num, masked_cat = self.mask(numeric, categorical)
        if self.mode in ("both", "mask"):
            tokens = self.backbone.forward_tokens(masked_num, masked_cat)
            loss = loss + self.reconstruction(tokens[:, 0], numeric, categorical)
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
