"""fp16 variants for GPU inference: fp16 weights and compute, fp32 inputs and outputs.

Verified against the fp32 model where this machine's onnxruntime can run fp16 (the CUDA
provider; the CPU provider lacks fp16 kernels for most ops, and then the variant is written
but marked "not verified here" — `tests/bench/gpu_check.py` verifies it on a GPU). Never
imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

NOT_VERIFIED = "not verified here"
#: largest fp16-vs-fp32 difference of a probability-like output accepted as agreement
TOLERANCE = 1e-2


def convert(fp32: Path, out: Path) -> None:
    """fp16 copy of ``fp32`` (onnxconverter-common), graph inputs/outputs kept fp32 and ops
    without fp16 kernels (its default block list) kept fp32 behind casts."""
    import warnings

    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(fp32))
    with warnings.catch_warnings():  # one warning per tiny weight rounded to fp16's range
        warnings.simplefilter("ignore")
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    _retarget_casts(half.graph)
    _rewire_outputs(half.graph)
    onnx.save(half, str(out))


def _rewire_outputs(graph: Any) -> None:
    """A graph output that is also used inside the graph (logits → temperature → softmax)
    gets the converter's fp32 cast, and its inner users then read fp32 where fp16 is due:
    they read the fp16 tensor before the cast instead."""
    from onnx import TensorProto

    outputs = {o.name for o in graph.output}
    cast_from = {
        node.output[0]: node.input[0]
        for node in graph.node
        if node.op_type == "Cast"
        and node.output
        and node.output[0] in outputs
        and any(a.name == "to" and a.i == TensorProto.FLOAT for a in node.attribute)
    }
    for node in graph.node:
        if node.op_type == "Cast" and node.output and node.output[0] in cast_from:
            continue
        for k, name in enumerate(node.input):
            if name in cast_from:
                node.input[k] = cast_from[name]


def _retarget_casts(graph: Any) -> None:
    """The converter turns tensors to fp16 but leaves ``Cast(to=FLOAT)`` nodes (e.g. uint8
    pixels → float) as they were, so the graph no longer type-checks: cast those to fp16."""
    from onnx import TensorProto

    half = {v.name for v in graph.value_info if v.type.tensor_type.elem_type == TensorProto.FLOAT16}
    for node in graph.node:
        if node.op_type != "Cast" or not node.output or node.output[0] not in half:
            continue
        for attr in node.attribute:
            if attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16


def runnable_here(path: Path) -> tuple[Any | None, str]:
    """(the fp16 model loaded on the best provider that runs it, that provider) or
    (None, why not): CUDA when a GPU is here, else a try on the CPU provider."""
    from .errors import TLError
    from .runtime import cuda_available, load_onnx_model

    device = "cuda" if cuda_available() else "cpu"
    try:
        model = load_onnx_model(path, device=device)
    except TLError as exc:
        return None, f"onnxruntime ({device}) cannot run it: {exc.what}"
    return model, model.providers[0]


def agreement_ok(worst: dict[str, float]) -> bool:
    return all(diff <= TOLERANCE for diff in worst.values())


def smoke_run(model: Any, feeds: Sequence[dict]) -> str | None:
    """None when ``model`` runs the first feed, else why not (one line)."""
    try:
        model.run(feeds[0])
    except Exception as exc:  # onnxruntime raises its own exception types
        return f"onnxruntime cannot run it: {str(exc).splitlines()[0][:160]}"
    return None


def export_fp16(job: Any, max_drop: float) -> dict[str, Any]:
    """RUN_DIR/model.fp16.onnx and its export.json record: verified (agreement with fp32
    and the monitored metric within ``max_drop``) where it runs here, else marked so."""
    from .errors import ExportError
    from .fileio import atomic_path
    from .runtime import load_onnx_model
    from .variant_eval import compare, stamp_variant, write_export_json

    source = job.source
    out = source.run_dir / "model.fp16.onnx"
    with atomic_path(out) as tmp:
        convert(source.model_path, tmp)
        stamp_variant(source.model_path, tmp, "fp16")
    model, where = runnable_here(out)
    why = where if model is None else smoke_run(model, [b.inputs for b in job.test.batches])
    size = {"size_bytes": out.stat().st_size,
            "size_ratio": round(out.stat().st_size / source.model_path.stat().st_size, 4)}  # fmt: skip
    if why is not None:
        job.log(f"fp16 written, {NOT_VERIFIED}: {why}")
        entry = job.entry("fp16", out, size, verified=NOT_VERIFIED, reason=why)
        write_export_json(source.run_dir, "fp16", entry)
        return entry
    reference = job.reference
    if model.on_gpu:  # compare on the same provider: latency and agreement alike
        reference = load_onnx_model(source.model_path, device="cuda")
    result = compare(job.plugin, source, reference, model, job.test)
    worst = result["max_abs_diff"]
    passed = agreement_ok(worst) and result["monitored_drop"] <= max_drop
    entry = job.entry(
        "fp16", out, result, provider=where, max_abs_diff=worst, max_drop=max_drop, verified=passed
    )
    if not passed:
        out.unlink(missing_ok=True)
        entry["file"] = None
        write_export_json(source.run_dir, "fp16", entry)
        raise ExportError(
            f"the fp16 model disagrees with fp32 (max diff {max(worst.values(), default=0):.2g}, "
            f"{result['monitor']} drop {result['monitored_drop']:.4f}); no model.fp16.onnx written",
            source.run_dir,
            "export --precision fp32 for this model",
        )
    write_export_json(source.run_dir, "fp16", entry)
    return entry
