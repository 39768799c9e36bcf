"""The preprocessing graph in front of the exported network, and the decision after it.

`preprocessing_graph` turns the raw column inputs (`raw_inputs`) into the two matrices the
torch network was exported with — ``numeric`` float32 ``[N, F]`` (NaN = missing) and
``categorical`` int64 ``[N, C]`` (0 = unknown or missing) — exactly as
`TableSchema.encode` does: ``ai.onnx.ml.LabelEncoder`` for vocabularies and boolean
spellings, integer arithmetic on epoch seconds for datetime parts (hour + minute / 60,
weekday with Monday = 0, day of month). log1p, median/IQR scaling and clipping are already
in the network. `compose` joins the three: raw inputs → ``probability`` and ``alert``
(probability ≥ the run's threshold).
"""

from __future__ import annotations

from itertools import product
from typing import Any

import numpy as np
from onnx import ModelProto, TensorProto, compose, helper, numpy_helper

from .raw_inputs import INTERNAL_PREFIX, MISSING_TIME, RawInput
from .schema import BOOL_WORDS, BOOLEAN, DATETIME, TableSchema

ML_DOMAIN = "ai.onnx.ml"
ML_OPSET = 4  # LabelEncoder with tensor keys (float64 categories); onnxruntime ≥ 1.17
NUMERIC, CATEGORICAL = "numeric", "categorical"  # the network's inputs
MODEL_PREFIX = "model/"
DAY = 86400
_ONNX_TYPES = {
    "double": TensorProto.DOUBLE,
    "string": TensorProto.STRING,
    "int64": TensorProto.INT64,
}


class _Graph:
    """Nodes and constants under fresh internal names."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[TensorProto] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{INTERNAL_PREFIX}{hint}_{self.count}"

    def const(self, value: Any, dtype: Any, hint: str = "c") -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str = "", domain: str = "", **attrs) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], domain=domain, **attrs))
        return out

    def int_op(self, op_type: str, value: str, constant: int) -> str:
        return self.op(op_type, [value, self.const(constant, np.int64)])


def bool_spellings() -> dict[str, float]:
    """Every spelling of a boolean the reader accepts (each word in any letter case), plus
    1/0 as numbers' text; anything else maps to NaN (missing)."""
    words: dict[str, float] = {}
    for word, value in BOOL_WORDS.items():
        for letters in product(*((c.lower(), c.upper()) for c in word)):
            words["".join(letters)] = value
    words.update({"1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0})
    return words


def preprocessing_graph(
    schema: TableSchema, inputs: list[RawInput], opset: int, ir_version: int
) -> ModelProto:
    """Raw inputs → ``tl/numeric`` and ``tl/categorical`` (see the module docstring)."""
    g = _Graph()
    by_column = {spec.column: spec for spec in inputs}
    columns = []
    for feature in schema.numeric:
        spec = by_column[feature.source]
        if feature.kind == DATETIME:
            value = _datetime_part(g, spec.name, feature.part or "hour")
        elif feature.kind == BOOLEAN:
            value = _boolean(g, spec.name)
        else:
            value = g.op("Cast", [spec.name], to=TensorProto.FLOAT)
        columns.append(g.op("Unsqueeze", [value, g.const([1], np.int64)]))
    codes = []
    for feature in schema.categorical:
        spec = by_column[feature.name]
        codes.append(
            g.op("Unsqueeze", [_vocab_codes(g, spec, feature.vocab), g.const([1], np.int64)])
        )
    first = inputs[0].name
    numeric = _matrix(g, columns, first, np.float32, NUMERIC)
    categorical = _matrix(g, codes, first, np.int64, CATEGORICAL)
    graph = helper.make_graph(
        g.nodes,
        "tl_fraud_preprocessing",
        [helper.make_tensor_value_info(s.name, _ONNX_TYPES[s.dtype], ["batch"]) for s in inputs],
        [
            helper.make_tensor_value_info(numeric, TensorProto.FLOAT, ["batch", len(columns)]),
            helper.make_tensor_value_info(categorical, TensorProto.INT64, ["batch", len(codes)]),
        ],
        initializer=g.initializers,
    )
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid(ML_DOMAIN, ML_OPSET)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=ir_version)


def _matrix(g: _Graph, columns: list[str], first: str, dtype: Any, name: str) -> str:
    """Columns side by side as ``tl/<name>``; ``[N, 0]`` when there are none."""
    out = f"{INTERNAL_PREFIX}{name}"
    if columns:
        g.nodes.append(helper.make_node("Concat", columns, [out], axis=1))
        return out
    rows = g.op("Shape", [first])
    shape = g.op("Concat", [rows, g.const([0], np.int64)], axis=0)
    zero = numpy_helper.from_array(np.zeros(1, dtype=dtype))
    g.nodes.append(helper.make_node("ConstantOfShape", [shape], [out], value=zero))
    return out


def _boolean(g: _Graph, name: str) -> str:
    words = bool_spellings()
    return g.op("LabelEncoder", [name], domain=ML_DOMAIN, keys_strings=list(words),
                values_floats=list(words.values()), default_float=float("nan"))  # fmt: skip


def _vocab_codes(g: _Graph, spec: RawInput, vocab: list[str]) -> str:
    """1-based index into the vocabulary; 0 for unknown or missing (NaN, "")."""
    codes = np.arange(1, len(vocab) + 1, dtype=np.int64)
    if spec.dtype == "double":
        keys = np.asarray([float(v) for v in vocab], dtype=np.float64)
    else:
        keys = np.asarray(vocab, dtype=object)
    if not len(vocab):  # LabelEncoder needs a key: one that no row holds maps to 0 too
        keys = np.asarray([np.nan] if spec.dtype == "double" else [""], dtype=keys.dtype)
        codes = np.zeros(1, dtype=np.int64)
    return g.op("LabelEncoder", [spec.name], domain=ML_DOMAIN,
                keys_tensor=numpy_helper.from_array(keys),
                values_tensor=numpy_helper.from_array(codes),
                default_tensor=numpy_helper.from_array(np.zeros(1, dtype=np.int64)))  # fmt: skip


def _datetime_part(g: _Graph, seconds: str, part: str) -> str:
    """float32 part of int64 epoch seconds, NaN where `MISSING_TIME`. Mod on int64 takes
    the divisor's sign, so times before 1970 are right too."""
    of_day = g.int_op("Mod", seconds, DAY)
    days = g.int_op("Div", g.op("Sub", [seconds, of_day]), DAY)  # exact: floor division
    if part == "hour":
        hour = g.op("Cast", [g.int_op("Div", of_day, 3600)], to=TensorProto.DOUBLE)
        minute = g.int_op("Div", g.int_op("Mod", of_day, 3600), 60)
        fraction = g.op("Div", [g.op("Cast", [minute], to=TensorProto.DOUBLE),
                                g.const(60.0, np.float64)])  # fmt: skip
        value = g.op("Add", [hour, fraction])
    elif part == "weekday":  # 1970-01-01 was a Thursday (3, Monday = 0)
        value = g.int_op("Mod", g.int_op("Add", days, 3), 7)
    elif part == "day":
        value = _day_of_month(g, days)
    else:
        raise ValueError(f"unknown datetime part {part!r}")
    value = g.op("Cast", [value], to=TensorProto.FLOAT)
    missing = g.op("Equal", [seconds, g.const(MISSING_TIME, np.int64)])
    return g.op("Where", [missing, g.const(np.nan, np.float32), value])


def _day_of_month(g: _Graph, days: str) -> str:
    """Day of the month of days since 1970-01-01 (H. Hinnant's civil_from_days, on
    non-negative integers from 0000-03-01 on)."""
    z = g.int_op("Add", days, 719468)
    era = g.int_op("Div", g.op("Sub", [z, g.int_op("Mod", z, 146097)]), 146097)
    doe = g.op("Sub", [z, g.int_op("Mul", era, 146097)])
    yoe = g.op("Sub", [g.op("Add", [g.op("Sub", [doe, g.int_op("Div", doe, 1460)]),
                                    g.int_op("Div", doe, 36524)]),
                       g.int_op("Div", doe, 146096)])  # fmt: skip
    yoe = g.int_op("Div", yoe, 365)
    start = g.op("Sub", [g.op("Add", [g.int_op("Mul", yoe, 365), g.int_op("Div", yoe, 4)]),
                         g.int_op("Div", yoe, 100)])  # fmt: skip
    doy = g.op("Sub", [doe, start])
    month = g.int_op("Div", g.int_op("Add", g.int_op("Mul", doy, 5), 2), 153)
    first = g.int_op("Div", g.int_op("Add", g.int_op("Mul", month, 153), 2), 5)
    return g.int_op("Add", g.op("Sub", [doy, first]), 1)


# ------------------------------------------------------------------ compose
def compose_model(prep: ModelProto, network: ModelProto, threshold: float) -> ModelProto:
    """``prep`` → ``network`` (its names prefixed with ``model/``) → ``probability`` and
    ``alert`` (bool, probability ≥ ``threshold`` in float32, as `tl predict` compares)."""
    wanted = {i.name for i in network.graph.input}
    io_map = [(f"{INTERNAL_PREFIX}{n}", n) for n in (NUMERIC, CATEGORICAL) if n in wanted]
    merged = compose.merge_models(prep, network, io_map=io_map, prefix2=MODEL_PREFIX)
    graph = merged.graph
    probability = f"{MODEL_PREFIX}probability"
    limit = numpy_helper.from_array(
        np.asarray(threshold, dtype=np.float32), f"{INTERNAL_PREFIX}threshold"
    )
    graph.initializer.append(limit)
    graph.node.extend([
        helper.make_node("Identity", [probability], ["probability"]),
        helper.make_node("GreaterOrEqual", [probability, limit.name], ["alert"]),
    ])  # fmt: skip
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch"]),
        helper.make_tensor_value_info("alert", TensorProto.BOOL, ["batch"]),
    ])  # fmt: skip
    graph.name = "tl_fraud"
    opsets = {o.domain or "": o.version for o in merged.opset_import}
    del merged.opset_import[:]
    merged.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets.items())
    return merged
