"""A Triton Inference Server model repository for a tl model: ``REPO/<name>/config.pbtxt``
and ``REPO/<name>/1/model.onnx`` (onnxruntime backend).

Inputs and outputs — names, data types, dims — are read from the graph through onnxruntime
(what Triton's backend itself sees). With a batch axis on every tensor the config declares
``max_batch_size`` and dims without that axis, and turns on dynamic batching; otherwise
``max_batch_size: 0`` and full dims. The tl metadata travels as ``parameters``. Written in
protobuf text format by hand (no tritonclient needed to export); the tests parse it with
Triton's own schema. Never imports torch.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, ExportError

#: onnxruntime's element type → Triton's data type
TRITON_TYPES = {
    "tensor(float)": "TYPE_FP32",
    "tensor(float16)": "TYPE_FP16",
    "tensor(double)": "TYPE_FP64",
    "tensor(bfloat16)": "TYPE_BF16",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(uint16)": "TYPE_UINT16",
    "tensor(uint32)": "TYPE_UINT32",
    "tensor(uint64)": "TYPE_UINT64",
    "tensor(int8)": "TYPE_INT8",
    "tensor(int16)": "TYPE_INT16",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
    "tensor(bool)": "TYPE_BOOL",
    "tensor(string)": "TYPE_STRING",
}
DEFAULT_MAX_BATCH = 64


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str
    shape: list[int | str | None]  # ints fixed; str / None dynamic

    def batched(self) -> bool:
        return bool(self.shape) and not isinstance(self.shape[0], int)

    def dims(self, drop_batch: bool) -> list[int]:
        dims = self.shape[1:] if drop_batch else self.shape
        return [d if isinstance(d, int) and d > 0 else -1 for d in dims]


def graph_tensors(model_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of the ONNX graph as onnxruntime reports them."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise ExportError(
            f"onnxruntime cannot load the model: {str(exc).splitlines()[0][:160]}",
            model_path,
            "export a model this onnxruntime runs (fp16 needs a GPU: export it there)",
        ) from exc

    def spec(arg: Any) -> TensorSpec:
        if arg.type not in TRITON_TYPES:
            raise ExportError(
                f"tensor '{arg.name}' has type {arg.type}, which Triton cannot serve",
                model_path,
                "export a model with plain tensor inputs and outputs",
            )
        return TensorSpec(arg.name, TRITON_TYPES[arg.type], list(arg.shape or []))

    return [spec(i) for i in session.get_inputs()], [spec(o) for o in session.get_outputs()]


def model_name(run_dir: Path, precision: str) -> str:
    """A Triton model name from the run folder (letters, digits, ``-_.``), with the precision."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(run_dir).resolve().name).strip("._") or "model"
    return base if precision == "fp32" else f"{base}_{precision}"


def _quote(text: str) -> str:
    from google.protobuf import text_encoding

    return '"' + text_encoding.CEscape(text, as_utf8=True) + '"'


def _tensor_block(specs: list[TensorSpec], drop_batch: bool) -> str:
    entries = []
    for spec in specs:
        dims = ", ".join(str(d) for d in spec.dims(drop_batch))
        entries.append(
            "  {\n"
            f"    name: {_quote(spec.name)}\n"
            f"    data_type: {spec.data_type}\n"
            f"    dims: [ {dims} ]\n"
            "  }"
        )
    return ",\n".join(entries)


def config_text(
    name: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    meta: dict[str, Any],
    max_batch_size: int,
) -> str:
    """config.pbtxt for the onnxruntime backend (GPU instance, dynamic batching)."""
    batched = all(t.batched() for t in [*inputs, *outputs]) and max_batch_size > 0
    lines = [
        f"name: {_quote(name)}",
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {max_batch_size if batched else 0}",
        "input [\n" + _tensor_block(inputs, batched) + "\n]",
        "output [\n" + _tensor_block(outputs, batched) + "\n]",
    ]
    if batched:
        lines.append("dynamic_batching { }")
    lines.append("instance_group [\n  {\n    count: 1\n    kind: KIND_GPU\n  }\n]")
    params = {"tl": json.dumps(meta, sort_keys=True)}
    for key in ("plugin", "task", "precision", "threshold"):
        if meta.get(key) is not None:
            params[f"tl.{key}"] = str(meta[key])
    if meta.get("labels") is not None:
        params["tl.labels"] = json.dumps(meta["labels"])
    for key, value in params.items():
        lines.append(
            f"parameters {{\n  key: {_quote(key)}\n  value {{ string_value: {_quote(value)} }}\n}}"
        )
    return "\n".join(lines) + "\n"


def write_repository(
    model_path: Path, repo: Path, name: str, max_batch_size: int = DEFAULT_MAX_BATCH
) -> Path:
    """REPO/<name>/{config.pbtxt,1/model.onnx}; returns the model's folder. An existing
    model folder of that name is replaced as a whole (never a mix of two exports)."""
    from .fileio import write_text_atomic
    from .runtime import read_metadata

    repo = Path(repo)
    if repo.exists() and not repo.is_dir():
        raise ConfigError("--out is a file", repo, "pass a folder for the model repository")
    inputs, outputs = graph_tensors(model_path)
    meta = read_metadata(model_path)
    meta.setdefault("precision", "fp32")
    text = config_text(name, inputs, outputs, meta, max_batch_size)
    staging = repo / f".{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "1").mkdir(parents=True)
    try:
        shutil.copyfile(model_path, staging / "1" / "model.onnx")
        write_text_atomic(staging / "config.pbtxt", text)
        final = repo / name
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
