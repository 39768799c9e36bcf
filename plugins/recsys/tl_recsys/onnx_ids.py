"""Item ids in and out of the serving graph: strings at both ends, indices in between.

In front of the network: ``item_history`` string ``[N, L]`` (oldest first, most recent
last, left-padded with "") → vocabulary indices with ``ai.onnx.ml.LabelEncoder`` (unknown
ids and "" → 0), then the known items moved to the right end in their order — exactly the
left-padded known-item history `tl predict` builds, so an unknown id is ignored rather than
taking a position. After it: the top-k indices → item ids, "" where an item was masked
(seen, or padding) because the user has seen nearly the whole catalogue.
"""

from __future__ import annotations

import numpy as np
from onnx import ModelProto, TensorProto, compose, helper, numpy_helper

INPUT = "item_history"
ML_DOMAIN = "ai.onnx.ml"
ML_OPSET = 2  # LabelEncoder string ↔ int64
MODEL_PREFIX = "model/"
_P = "tl/"


def _const(name: str, value: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(value, f"{_P}{name}")


def history_graph(vocab: list[str], opset: int, ir_version: int) -> ModelProto:
    """``item_history`` strings → ``tl/history`` int64 indices, known items right-aligned."""
    n = np.int64(len(vocab))
    nodes = [
        helper.make_node("LabelEncoder", [INPUT], [f"{_P}codes"], domain=ML_DOMAIN,
                         keys_strings=list(vocab), values_int64s=list(range(1, n + 1)),
                         default_int64=0),
        helper.make_node("Shape", [INPUT], [f"{_P}length"], start=1, end=2),
        helper.make_node("Squeeze", [f"{_P}length"], [f"{_P}length_scalar"]),
        helper.make_node("Range", [f"{_P}zero", f"{_P}length_scalar", f"{_P}one"],
                         [f"{_P}positions"]),
        helper.make_node("Greater", [f"{_P}codes", f"{_P}zero"], [f"{_P}known_bool"]),
        helper.make_node("Cast", [f"{_P}known_bool"], [f"{_P}known"], to=TensorProto.INT64),
        helper.make_node("Mul", [f"{_P}known", f"{_P}length"], [f"{_P}offset"]),
        helper.make_node("Add", [f"{_P}offset", f"{_P}positions"], [f"{_P}key"]),
        helper.make_node("TopK", [f"{_P}key", f"{_P}length"], [f"{_P}sorted", f"{_P}order"],
                         axis=1, largest=0, sorted=1),
        helper.make_node("GatherElements", [f"{_P}codes", f"{_P}order"], [f"{_P}history"],
                         axis=1),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "tl_recsys_history",
        [helper.make_tensor_value_info(INPUT, TensorProto.STRING, ["batch", "sequence"])],
        [helper.make_tensor_value_info(f"{_P}history", TensorProto.INT64, ["batch", "sequence"])],
        initializer=[
            _const("zero", np.asarray(0, np.int64)),
            _const("one", np.asarray(1, np.int64)),
        ],
    )
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid(ML_DOMAIN, ML_OPSET)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=ir_version)


def compose_model(network: ModelProto, vocab: list[str], mask_value: float) -> ModelProto:
    """history graph → ``network`` (names prefixed ``model/``) → ``top_items`` as ids."""
    opset = next(o.version for o in network.opset_import if o.domain in ("", "ai.onnx"))
    front = history_graph(vocab, opset, network.ir_version)
    merged = compose.merge_models(
        front, network, io_map=[(f"{_P}history", INPUT)], prefix2=MODEL_PREFIX
    )
    graph = merged.graph
    n = len(vocab)
    graph.initializer.extend([
        _const("no_item", np.asarray("", dtype=object)),
        _const("mask_half", np.asarray(mask_value / 2, np.float32)),
    ])  # fmt: skip
    graph.node.extend([
        helper.make_node("LabelEncoder", [f"{MODEL_PREFIX}top_items"], [f"{_P}top_ids"],
                         domain=ML_DOMAIN, keys_int64s=list(range(1, n + 1)),
                         values_strings=list(vocab), default_string=""),
        helper.make_node("Greater", [f"{MODEL_PREFIX}top_scores", f"{_P}mask_half"],
                         [f"{_P}recommended"]),
        helper.make_node("Where", [f"{_P}recommended", f"{_P}top_ids", f"{_P}no_item"],
                         ["top_items"]),
        helper.make_node("Identity", [f"{MODEL_PREFIX}top_scores"], ["top_scores"]),
        helper.make_node("Identity", [f"{MODEL_PREFIX}user_embedding"], ["user_embedding"]),
    ])  # fmt: skip
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info("top_items", TensorProto.STRING, ["batch", "k"]),
        helper.make_tensor_value_info("top_scores", TensorProto.FLOAT, ["batch", "k"]),
        helper.make_tensor_value_info("user_embedding", TensorProto.FLOAT, ["batch", "d"]),
    ])  # fmt: skip
    graph.name = "tl_recsys"
    opsets = {o.domain or "": o.version for o in merged.opset_import}
    del merged.opset_import[:]
    merged.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets.items())
    return merged
