"""The ONNX serving graph: item ids of a history → top-k item ids, seen items masked inside.

The torch part (`TopKRecommender`) works on vocabulary indices; `onnx_ids.compose_model`
puts the id → index lookup in front of it and index → id after it, so the file takes and
returns the business's item ids. Parity is checked on real test histories given as ids,
with ids the model does not know mixed in (they must change nothing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tl.core import ComposedExportSpec, input_entry
from torch import nn

from .model import MASK_VALUE, SASRec
from .sequences import left_pad

INPUT = "item_history"
OUTPUTS = ["top_items", "top_scores", "user_embedding"]
EMBEDDINGS_FILE = "item_embeddings.npy"


class TopKRecommender(nn.Module):
    """``item_history`` (B, T) int64 left-padded → top-k indices, scores, and the user vector.

    ``user_embedding`` is ``[query, 1]`` and `item_matrix` is ``[E_i, b_i]``, so their dot
    product is exactly the score: an ANN index over `item_embeddings.npy` serves the same
    ranking. Items in the history (and the padding index) get `MASK_VALUE`.
    """

    def __init__(self, model: SASRec, k: int) -> None:
        super().__init__()
        self.model = model
        self.k = k

    def forward(self, item_history: torch.Tensor) -> tuple[torch.Tensor, ...]:
        query = self.model.user_query(item_history)
        scores = self.model.head.score(query, self.model.item_weight)
        scores = scores.scatter(1, item_history, MASK_VALUE)
        scores = torch.cat([torch.full_like(scores[:, :1], MASK_VALUE), scores[:, 1:]], dim=1)
        values, indices = scores.topk(self.k, dim=1)
        user = torch.cat([query, torch.ones_like(query[:, :1])], dim=1)
        return indices, values, user


def item_matrix(model: SASRec) -> np.ndarray:
    """``[E_i, b_i]`` per vocabulary index (row 0 = padding), float32."""
    weight = model.item_weight.detach().cpu()
    bias = model.head.item_bias.detach().cpu().unsqueeze(1)
    return torch.cat([weight, bias], dim=1).numpy().astype(np.float32)


def write_item_embeddings(model: SASRec, run_dir: Path) -> Path:
    from tl.core import atomic_path

    target = Path(run_dir) / EMBEDDINGS_FILE
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.save(fh, item_matrix(model))
    return target


UNKNOWN_ID = "__tl_unknown_item__"


def parity_batches(histories: list[np.ndarray], batch_size: int = 32, n: int = 3) -> list[dict]:
    """Real histories, left-padded per batch (so batches differ in length)."""
    batches = []
    for start in range(0, min(len(histories), batch_size * n), batch_size):
        batches.append({INPUT: left_pad(histories[start : start + batch_size])})
    return batches


def id_batches(
    histories: list[np.ndarray], vocab: list[str], batch_size: int = 32, n: int = 3
) -> list[dict]:
    """The `parity_batches` histories as item ids, left-padded with "", every other user's
    with an id the model does not know first, in the middle and last."""
    ids = np.asarray(["", *vocab], dtype=object)
    batches = []
    for start in range(0, min(len(histories), batch_size * n), batch_size):
        rows = []
        for offset, history in enumerate(histories[start : start + batch_size]):
            row = list(ids[history])
            if offset % 2:
                row = [UNKNOWN_ID, *row[: len(row) // 2], UNKNOWN_ID, *row[len(row) // 2 :]]
                row.append(UNKNOWN_ID)
            rows.append(row)
        width = max(1, max(len(r) for r in rows))
        batch = np.full((len(rows), width), "", dtype=object)
        for i, row in enumerate(rows):
            if row:
                batch[i, width - len(row) :] = row
        batches.append({INPUT: batch})
    return batches


def export_spec(
    model: SASRec, vocab: list[str], histories: list[np.ndarray], k: int
) -> ComposedExportSpec:
    from .onnx_ids import compose_model

    module = TopKRecommender(model, k).eval()
    return ComposedExportSpec(
        module=module,
        batches=parity_batches(histories),
        onnx_batches=id_batches(histories, vocab),
        compose=lambda network: compose_model(network, list(vocab), MASK_VALUE),
        input_names=[INPUT],
        output_names=list(OUTPUTS),
        dynamic_axes={
            INPUT: {0: "batch", 1: "sequence"},
            "top_items": {0: "batch"},
            "top_scores": {0: "batch"},
            "user_embedding": {0: "batch"},
        },
        metadata={
            "task": "next-item recommendation",
            "k": k,
            "items": list(vocab),
            "inputs": [
                input_entry(
                    INPUT,
                    "string",
                    "item_id",
                    dtype="string",
                    shape=["batch", "sequence"],
                    order="oldest first, most recent last",
                    padding="'' on the left",
                    unknown="ignored (as if absent)",
                    excluded="items in it are never recommended",
                )  # fmt: skip
            ],
            "input": {
                INPUT: "string (batch, sequence) item ids, oldest first, left-padded with ''; "
                "ids the model does not know are ignored; items in it are never recommended"
            },
            "outputs": {
                "top_items": "string (batch, k) item ids, best first; '' where no item is left "
                "(every other item seen)",
                "top_scores": f"float32 (batch, k); {MASK_VALUE:g} marks a masked item",
                "user_embedding": f"float32 (batch, d+1); score = user_embedding · "
                f"{EMBEDDINGS_FILE}[index], row index = position in items + 1",
            },
            "max_len": model.config.max_len,
            "mask_value": MASK_VALUE,
            "item_embeddings": EMBEDDINGS_FILE,
        },
        compare=["top_scores", "user_embedding"],
        agreement_output=None,
        tolerance=1e-3,
    )
