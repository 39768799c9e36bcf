"""Moving encoder weights between tables by column name.

Every per-feature tensor of the tokenizer has one row per column (numeric) or per category
(categorical embedding table). Going from a source schema to a target schema:

- a column in both tables keeps its learned rows (numeric: frequencies, projection, bias,
  missing token; categorical: the column bias, the unknown row, and the row of every
  category value both vocabularies share);
- a column only in the target keeps its fresh initialisation, and so does a new category
  value of a shared column;
- a column only in the source is dropped.
A column that changed kind (numeric ↔ categorical) counts as new. Scaling statistics are
never copied: each table is scaled with its own training split. Everything else (the
[CLS] token, transformer blocks) has the same shape and is copied as is.
"""

from __future__ import annotations

from typing import Any

import torch

from .schema import TableSchema

PREFIX = "backbone.tokenizer."
NUMERIC_ROWS = ("num_frequencies", "num_weight", "num_bias", "num_missing")
OWN_BUFFERS = ("num_center", "num_scale", "num_log", "cat_offsets", "cat_sizes")


def adapt_state_dict(
    state: dict[str, torch.Tensor],
    source: TableSchema,
    target: TableSchema,
    own: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``state`` rewritten to ``target``'s columns (``own`` holds the fresh init) + a summary."""
    state = dict(state)
    src_num = {name: i for i, name in enumerate(source.numeric_names)}
    tgt_num = target.numeric_names
    for key in NUMERIC_ROWS:
        full = PREFIX + key
        if full not in state or full not in own:
            continue
        new = own[full].clone()
        for j, name in enumerate(tgt_num):
            i = src_num.get(name)
            if i is not None and state[full].shape[1:] == new.shape[1:]:
                new[j] = state[full][i]
        state[full] = new
    src_cat = {f.name: (i, f.vocab) for i, f in enumerate(source.categorical)}
    categories_shared = 0
    emb_key, bias_key = PREFIX + "cat_embedding.weight", PREFIX + "cat_bias"
    if emb_key in state and emb_key in own:
        src_offsets = _offsets(source.cardinalities)
        tgt_offsets = _offsets(target.cardinalities)
        emb, bias = own[emb_key].clone(), own[bias_key].clone()
        same_width = state[emb_key].shape[1:] == emb.shape[1:]
        for j, feature in enumerate(target.categorical):
            if feature.name not in src_cat or not same_width:
                continue
            i, src_vocab = src_cat[feature.name]
            bias[j] = state[bias_key][i]
            emb[tgt_offsets[j]] = state[emb_key][src_offsets[i]]
            src_code = {value: code for code, value in enumerate(src_vocab, start=1)}
            for code, value in enumerate(feature.vocab, start=1):
                if value in src_code:
                    emb[tgt_offsets[j] + code] = state[emb_key][src_offsets[i] + src_code[value]]
                    categories_shared += 1
        state[emb_key], state[bias_key] = emb, bias
    for key in OWN_BUFFERS:
        state.pop(PREFIX + key, None)
    source_cols = set(source.numeric_names) | set(src_cat)
    target_cols = set(tgt_num) | set(target.categorical_names)
    shared_num = [n for n in tgt_num if n in src_num]
    shared_cat = [f.name for f in target.categorical if f.name in src_cat]
    summary = {
        "shared_columns": shared_num + shared_cat,
        "new_columns": sorted(target_cols - set(shared_num) - set(shared_cat)),
        "dropped_columns": sorted(source_cols - target_cols),
        "shared_categories": categories_shared,
    }
    return state, summary


def _offsets(cardinalities: list[int]) -> list[int]:
    offsets, total = [], 0
    for size in cardinalities:
        offsets.append(total)
        total += size
    return offsets
