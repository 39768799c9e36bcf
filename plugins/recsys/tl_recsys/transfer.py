"""Moving learned item rows between catalogues (market A → market B).

A saved model knows its item vocabulary (`weights_metadata`); a new model has its own. Rows
of item-indexed tensors are moved to the new index of each shared item, new items keep
their fresh initialisation, and items only the source knew are dropped. Users need nothing:
the model is inductive, a user is their history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

META_KEY = "recsys"
ITEM_ROWS = ("backbone.item_embedding.weight", "head.item_bias")
POSITION_KEY = "backbone.position_embedding.weight"


def weights_metadata(vocab: list[str], config: dict[str, Any]) -> dict[str, Any]:
    return {META_KEY: {"items": list(vocab), "sasrec": dict(config)}}


def find_meta(meta: Any, depth: int = 3) -> dict[str, Any] | None:
    """Our block inside whatever the core wrapped around it (searched a few levels deep)."""
    if not isinstance(meta, dict) or depth < 0:
        return None
    block = meta.get(META_KEY)
    if isinstance(block, dict) and isinstance(block.get("items"), list):
        return block
    for value in meta.values():
        found = find_meta(value, depth - 1)
        if found is not None:
            return found
    return None


def read_source_meta(path: Path) -> dict[str, Any] | None:
    """The recsys block of a tl safetensors file's ``tl`` metadata, if any (the core's
    reader: a corrupt file is its one-line WeightsError)."""
    from tl.core import read_weights_metadata

    return find_meta({"tl": read_weights_metadata(path)})


def shared_rows(source_items: list[str], target_items: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(source index, target index) of every item both vocabularies hold (1-based rows)."""
    positions = pd.Index(target_items).get_indexer(pd.Index(source_items))
    found = positions >= 0
    return np.flatnonzero(found) + 1, positions[found] + 1


def adapt_state_dict(
    state: dict[str, Any], source_meta: Any, own: dict[str, Any], target_items: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``state`` rewritten to ``own``'s shapes and item order; plus a summary for the report."""
    block = find_meta(source_meta)
    if block is None:
        return state, {"items_shared": None}
    src, dst = shared_rows(block["items"], target_items)
    src_t = _index(src)
    dst_t = _index(dst)
    state = dict(state)
    for key in ITEM_ROWS:
        if key in state and key in own:
            rows = own[key].detach().clone()
            rows[dst_t] = state[key][src_t].to(rows.dtype)
            state[key] = rows
    if POSITION_KEY in state and POSITION_KEY in own:
        saved, fresh = state[POSITION_KEY], own[POSITION_KEY].detach().clone()
        n = min(len(saved), len(fresh))
        fresh[:n] = saved[:n]
        state[POSITION_KEY] = fresh
    summary = {
        "items_source": len(block["items"]),
        "items_target": len(target_items),
        "items_shared": len(src),
        "items_new": len(target_items) - len(src),
    }
    return state, summary


def _index(rows: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(rows.astype(np.int64))
