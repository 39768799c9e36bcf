"""Open Inference Protocol (KServe v2) tensors ⇄ numpy, with Triton's binary tensor data
extension (what ``tritonclient.http`` sends and asks for by default).

A request is JSON, optionally followed by raw tensor bytes: the
``Inference-Header-Content-Length`` header says where the JSON ends, and each input carrying
``parameters.binary_data_size`` takes its bytes from what follows, in input order. Outputs
asked for with ``parameters.binary_data`` (or every output, with the request's
``parameters.binary_data_output``) are answered the same way. BYTES elements are
length-prefixed: a 4-byte little-endian length, then the bytes.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import bad_request

HEADER_LENGTH = "inference-header-content-length"

#: v2 datatype → numpy dtype (BYTES: Python objects, str or bytes)
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: its name, v2 datatype and shape (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @classmethod
    def of(cls, node: Any) -> TensorSpec:
        """From an onnxruntime ``NodeArg`` (symbolic or unknown dimensions become -1)."""
        datatype = _ORT_TYPES.get(node.type)
        if datatype is None:
            raise ValueError(f"unsupported ONNX type {node.type} of '{node.name}'")
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (node.shape or []))
        return cls(node.name, datatype, shape)

    @property
    def dtype(self) -> np.dtype:
        return DTYPES[self.datatype]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def datatype_of(array: np.ndarray) -> str:
    if array.dtype.kind in "OSU":
        return "BYTES"
    for name, dtype in DTYPES.items():
        if dtype == array.dtype:
            return name
    raise ValueError(f"no v2 datatype for numpy {array.dtype}")


@dataclass(frozen=True)
class InferRequest:
    """A parsed ``/infer`` request: inputs by name, and which outputs to return how
    (``outputs`` None: all of them; ``binary`` by output name, ``binary_default`` else)."""

    id: str | None
    feeds: dict[str, np.ndarray]
    outputs: list[str] | None
    binary: dict[str, bool]
    binary_default: bool


def parse_infer_request(
    body: bytes, header_length: str | None, inputs: Sequence[TensorSpec], outputs: Sequence[str]
) -> InferRequest:
    """The request's tensors, checked against the model's inputs (names, datatypes, shapes,
    element counts); any mismatch is a 400 `RequestError` saying what to send instead."""
    document, binary = _split_body(body, header_length)
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        raise bad_request(
            "the request has no 'inputs' list", 'send {"inputs": [{"name", "datatype", ...}]}'
        )
    specs = {spec.name: spec for spec in inputs}
    feeds: dict[str, np.ndarray] = {}
    offset = 0
    for entry in document["inputs"]:
        spec = _input_spec(entry, specs, feeds)
        shape = _shape(entry, spec)
        size = _binary_size(entry.get("parameters"), spec.name)
        if size is None:
            if "data" not in entry:
                raise bad_request(f"input '{spec.name}' has no 'data'", "send its values as data")
            feeds[spec.name] = _from_json(entry["data"], spec, shape)
        else:
            if offset + size > len(binary):
                raise bad_request(
                    f"input '{spec.name}' says binary_data_size {size}, but only "
                    f"{len(binary) - offset} bytes follow the JSON",
                    "send the tensor bytes after the JSON header",
                )
            feeds[spec.name] = _from_bytes(binary[offset : offset + size], spec, shape)
            offset += size
    if offset != len(binary):
        raise bad_request(
            f"{len(binary) - offset} bytes after the JSON belong to no input",
            "give each binary input its binary_data_size",
        )
    missing = [name for name in specs if name not in feeds]
    if missing:
        raise bad_request(
            f"input '{missing[0]}' is missing", f"send every input: {', '.join(specs)}"
        )
    wanted, binary_flags = _requested_outputs(document, outputs)
    parameters = document.get("parameters") if isinstance(document.get("parameters"), dict) else {}
    request_id = document.get("id")
    return InferRequest(
        id=str(request_id) if request_id is not None else None,
        feeds=feeds,
        outputs=wanted,
        binary=binary_flags,
        binary_default=bool(parameters.get("binary_data_output", False)),
    )


def _split_body(body: bytes, header_length: str | None) -> tuple[Any, bytes]:
    end = len(body)
    if header_length is not None:
        try:
            end = int(header_length)
        except ValueError:
            end = -1
        if not 0 <= end <= len(body):
            raise bad_request(
                f"Inference-Header-Content-Length {header_length} does not fit a body of "
                f"{len(body)} bytes",
                "set it to the length of the JSON part",
            )
    try:
        document = json.loads(body[:end])
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(
            f"the request body is not valid JSON ({str(exc).splitlines()[0][:80]})",
            'send a v2 inference request: {"inputs": [...]}',
        ) from None
    return document, body[end:]


def _input_spec(
    entry: Any, specs: Mapping[str, TensorSpec], feeds: Mapping[str, Any]
) -> TensorSpec:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise bad_request("an input has no name", "give each input a name, datatype and shape")
    name = entry["name"]
    if name not in specs:
        raise bad_request(f"the model has no input '{name}'", f"its inputs: {', '.join(specs)}")
    if name in feeds:
        raise bad_request(f"input '{name}' is given twice", "send each input once")
    spec = specs[name]
    if entry.get("datatype") != spec.datatype:
        raise bad_request(
            f"input '{name}' has datatype {entry.get('datatype')}, the model takes {spec.datatype}",
            f"send it as {spec.datatype}",
        )
    return spec


def _shape(entry: Mapping[str, Any], spec: TensorSpec) -> tuple[int, ...]:
    shape = entry.get("shape")
    wanted = list(spec.shape)
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise bad_request(f"input '{spec.name}' has no valid shape", f"send a shape like {wanted}")
    if len(shape) != len(spec.shape) or any(
        want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
    ):
        raise bad_request(
            f"input '{spec.name}' has shape {shape}, the model takes {wanted} (-1: any size)",
            f"send a shape like {wanted}",
        )
    return tuple(shape)


def _binary_size(parameters: Any, name: str) -> int | None:
    if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
        return None
    size = parameters["binary_data_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise bad_request(
            f"input '{name}' has binary_data_size {size!r}", "give the byte count as an integer"
        )
    return size


def _from_json(data: Any, spec: TensorSpec, shape: tuple[int, ...]) -> np.ndarray:
    count = math.prod(shape)
    if spec.datatype == "BYTES":
        try:
            values = np.asarray(data, dtype=object).reshape(-1)
        except ValueError:
            values = np.asarray([None], dtype=object)
        if not all(isinstance(v, str) for v in values):
            raise bad_request(f"input '{spec.name}' is BYTES", "send its elements as strings")
        array = values
    else:
        try:
            raw = np.asarray(data)
        except ValueError:
            raise bad_request(
                f"input '{spec.name}' data is ragged", "send a flat or rectangular list"
            ) from None
        array = _cast(raw.reshape(-1), spec)
    if array.size != count:
        raise bad_request(
            f"input '{spec.name}' has {array.size} values, its shape {list(shape)} needs {count}",
            "send as many values as the shape holds",
        )
    return array.reshape(shape)


def _cast(raw: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """JSON numbers → the input's dtype, refusing what would silently change a value."""
    dtype, kind = spec.dtype, raw.dtype.kind
    numbers = "biu" if dtype.kind in "biu" else "biuf"
    if raw.size and kind not in numbers:
        expected = "true/false" if dtype.kind == "b" else f"{spec.datatype} numbers"
        raise bad_request(
            f"input '{spec.name}' holds non-{spec.datatype} values", f"send {expected}"
        )
    if dtype.kind in "iu" and raw.size:
        info = np.iinfo(dtype)
        if raw.min() < info.min or raw.max() > info.max:
            raise bad_request(
                f"input '{spec.name}' has values outside {spec.datatype}'s {info.min}..{info.max}",
                "send values in range",
            )
    if dtype.kind == "b" and kind != "b" and raw.size and not np.isin(raw, (0, 1)).all():
        raise bad_request(f"input '{spec.name}' is BOOL", "send true/false (or 0/1)")
    return raw.astype(dtype)


def _from_bytes(blob: bytes, spec: TensorSpec, shape: tuple[int, ...]) -> np.ndarray:
    count = math.prod(shape)
    if spec.datatype == "BYTES":
        values = _deserialize_bytes(blob, spec.name)
        if len(values) != count:
            raise bad_request(
                f"input '{spec.name}' has {len(values)} elements, its shape needs {count}",
                "send as many elements as the shape holds",
            )
        return np.asarray(values, dtype=object).reshape(shape)
    itemsize = spec.dtype.itemsize
    if len(blob) != count * itemsize:
        raise bad_request(
            f"input '{spec.name}' has {len(blob)} bytes, shape {list(shape)} of "
            f"{spec.datatype} needs {count * itemsize}",
            "send the tensor's raw little-endian bytes",
        )
    return np.frombuffer(blob, dtype=spec.dtype.newbyteorder("<")).astype(spec.dtype).reshape(shape)


def _deserialize_bytes(blob: bytes, name: str) -> list[str]:
    values, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise bad_request(
                f"input '{name}' BYTES data is truncated",
                "prefix each element with its 4-byte length",
            )
        (length,) = struct.unpack_from("<I", blob, offset)
        offset += 4
        if offset + length > len(blob):
            raise bad_request(
                f"input '{name}' BYTES data is truncated",
                "prefix each element with its 4-byte length",
            )
        try:
            values.append(blob[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise bad_request(
                f"input '{name}' has an element that is not UTF-8", "send UTF-8 text"
            ) from None
        offset += length
    return values


def _requested_outputs(
    document: Mapping[str, Any], outputs: Sequence[str]
) -> tuple[list[str] | None, dict[str, bool]]:
    asked = document.get("outputs")
    if asked is None:
        return None, {}
    if not isinstance(asked, list):
        raise bad_request("'outputs' is not a list", 'send a list of {"name": ...}')
    wanted, binary = [], {}
    for entry in asked:
        name = entry.get("name") if isinstance(entry, dict) else None
        if name not in outputs:
            raise bad_request(
                f"the model has no output '{name}'", f"its outputs: {', '.join(outputs)}"
            )
        parameters = entry.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise bad_request(f"output '{name}' parameters are not an object", "send an object")
        if parameters.get("classification"):
            raise bad_request(
                "the classification extension is not supported",
                "ask for the raw output (tl's labels are in the model metadata)",
            )
        wanted.append(name)
        if "binary_data" in parameters:
            binary[name] = bool(parameters["binary_data"])
    return wanted, binary


def encode_infer_response(
    model_name: str, request: InferRequest, outputs: Mapping[str, np.ndarray]
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers: JSON, then the binary outputs' bytes in order."""
    entries, blobs = [], []
    for name in request.outputs or list(outputs):
        array = np.asarray(outputs[name])
        entry: dict[str, Any] = {
            "name": name,
            "datatype": datatype_of(array),
            "shape": list(array.shape),
        }
        if request.binary.get(name, request.binary_default):
            blob = _serialize(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_values(array)
        entries.append(entry)
    document: dict[str, Any] = {"model_name": model_name, "model_version": "1", "outputs": entries}
    if request.id is not None:
        document["id"] = request.id
    header = json.dumps(document, separators=(",", ":")).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }


def _serialize(array: np.ndarray) -> bytes:
    if array.dtype.kind in "OSU":
        parts = []
        for value in array.reshape(-1):
            raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _json_values(array: np.ndarray) -> list[Any]:
    flat = array.reshape(-1)
    if array.dtype.kind in "OSU":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
    return flat.tolist()
