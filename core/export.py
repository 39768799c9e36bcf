"""ONNX export of a plugin's `ExportSpec`, with tl metadata, verified against PyTorch.

The exporter is torch.export-based (``dynamo=True``), the maintained path; when a graph
cannot be captured that way (some detection post-processing), the TorchScript exporter is
tried next and the one used is recorded in the metadata. Parity is measured with
onnxruntime on the real test batches the plugin hands over, preprocessing included; a
difference above the tolerance fails the run loudly.
"""

from __future__ import annotations

import errno
import io
import json
import time
import warnings
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ExportError
from .fileio import atomic_path
from .plugin import ExportSpec
from .runtime import METADATA_KEY

OPSET = 18
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
#: what a graph input carries, as listed in ``metadata["inputs"]``
INPUT_TYPES = ("number", "string", "boolean", "datetime", "image")


@dataclass
class ComposedExportSpec(ExportSpec):
    """An `ExportSpec` whose exported torch graph is wrapped into the deployed one.

    ``compose(torch_graph)`` returns the graph that is saved: e.g. a preprocessing graph
    (vocabulary lookups on string inputs, datetime parts) in front of the torch graph and a
    decision after it, so that the file takes the raw inputs a deployer has. ``onnx_batches``
    are the same rows as ``batches`` as that graph takes them (raw), fed to onnxruntime while
    torch gets ``batches``: parity then covers the composed graph end to end. Outputs are
    compared by name; outputs only one side has (a decision, string ids) are not compared.
    """

    compose: Callable[[Any], Any] | None = None
    onnx_batches: list[dict[str, Any]] | None = None


def input_entry(
    name: str, input_type: str, column: str | None = None, **details: Any
) -> dict[str, Any]:
    """One entry of ``metadata["inputs"]``: the graph input ``name``, the ``column`` (or
    field) of the data it comes from, its ``type`` (one of `INPUT_TYPES`) and any details
    (dtype, missing value, shape …)."""
    if input_type not in INPUT_TYPES:
        raise ValueError(f"input type {input_type!r} is not one of {INPUT_TYPES}")
    column = name if column is None else column
    return {"name": name, "column": column, "type": input_type, **details}


def export_onnx(spec: ExportSpec, path: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Export ``spec.module`` to ``path`` (atomically); return parity figures."""
    module = spec.module.eval().cpu()
    example = _example_inputs(spec)
    errors = []
    for exporter in ("dynamo", "torchscript"):
        try:
            with atomic_path(path) as tmp:
                _run_exporter(exporter, module, example, spec, tmp)
                _compose(tmp, spec)
                _write_metadata(tmp, {**metadata, "exporter": exporter, "opset": OPSET})
                parity = check_parity(tmp, spec)
        except ExportError:
            raise
        except OSError as exc:
            if exc.errno in _STORAGE_ERRNOS:  # the disk, not the exporter: no point retrying
                raise
            errors.append(f"{exporter}: OSError: {str(exc).splitlines()[0][:200]}")
            continue
        except Exception as exc:  # exporters raise many types; try the next one
            errors.append(f"{exporter}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        parity["exporter"] = exporter
        return parity
    raise ExportError(
        "the model could not be exported to ONNX: " + " | ".join(errors),
        path,
        "report this with --verbose output; try another backbone",
    )


def _example_inputs(spec: ExportSpec) -> tuple[torch.Tensor, ...]:
    if not spec.batches:
        raise ExportError(
            "no test batch to export and verify with", "export", "check the test split"
        )
    first = spec.batches[0]
    return tuple(torch.from_numpy(np.ascontiguousarray(first[name])) for name in spec.input_names)


def _run_exporter(exporter: str, module, example, spec: ExportSpec, target: Path) -> None:
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dims = {}
            shapes = {}
            for name in spec.input_names:
                axes = spec.dynamic_axes.get(name, {})
                shapes[name] = {
                    axis: dims.setdefault(label, torch.export.Dim.DYNAMIC)
                    for axis, label in axes.items()
                }
            program = torch.onnx.export(
                module,
                example,
                None,
                dynamo=True,
                opset_version=OPSET,
                input_names=spec.input_names,
                output_names=spec.output_names,
                dynamic_shapes=tuple(shapes[name] for name in spec.input_names),
                verbose=False,
                report=False,
            )
            program.save(str(target))
        else:
            torch.onnx.export(
                module,
                example,
                str(target),
                dynamo=False,
                opset_version=OPSET,
                input_names=spec.input_names,
                output_names=spec.output_names,
                dynamic_axes=spec.dynamic_axes,
            )


def _compose(path: Path, spec: ExportSpec) -> None:
    compose = getattr(spec, "compose", None)
    if compose is None:
        return
    import onnx

    model = compose(onnx.load(str(path)))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def check_inputs(model: Any, metadata: dict[str, Any], where: Path | str = "export") -> None:
    """``metadata["inputs"]`` (when there) lists every graph input in order, with a type."""
    entries = metadata.get("inputs")
    if entries is None:
        return
    graph_inputs = [i.name for i in model.graph.input]
    named = [e.get("name") for e in entries] if isinstance(entries, list) else None
    problem = None
    if named is None or not all(isinstance(e, dict) for e in entries):
        problem = "metadata 'inputs' is not a list of objects"
    elif named != graph_inputs:
        problem = f"metadata 'inputs' names {named}, the graph takes {graph_inputs}"
    else:
        bad = [e for e in entries if e.get("type") not in INPUT_TYPES or "column" not in e]
        if bad:
            problem = f"metadata 'inputs' entry {bad[0]} lacks a column or a type in {INPUT_TYPES}"
    if problem:
        raise ExportError(problem, where, "report this bug: the plugin describes its inputs wrong")


def _write_metadata(path: Path, metadata: dict[str, Any]) -> None:
    import onnx

    model = onnx.load(str(path))
    check_inputs(model, metadata, path)
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(metadata, default=str)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def check_parity(onnx_path: Path, spec: ExportSpec) -> dict[str, Any]:
    """Run torch and onnxruntime (CPU) on every batch; max abs diff and agreement."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    compare = spec.compare or spec.output_names
    ort_names = [o.name for o in session.get_outputs()]
    onnx_batches = getattr(spec, "onnx_batches", None) or spec.batches
    max_diff, agree, total, rows, seconds = 0.0, 0, 0, 0, 0.0
    for batch, onnx_batch in zip(spec.batches, onnx_batches, strict=True):
        feeds = {name: np.ascontiguousarray(batch[name]) for name in spec.input_names}
        ort_feeds = {i.name: onnx_batch[i.name] for i in session.get_inputs()}
        t0 = time.perf_counter()
        ort_out = dict(zip(ort_names, session.run(None, ort_feeds), strict=True))
        seconds += time.perf_counter() - t0
        with torch.inference_mode():
            torch_out = spec.module(*(torch.from_numpy(feeds[n]) for n in spec.input_names))
        if isinstance(torch_out, torch.Tensor):
            torch_out = (torch_out,)
        torch_out = dict(
            zip(
                spec.output_names,
                (t.float().numpy() if t.is_floating_point() else t.numpy() for t in torch_out),
                strict=True,
            )
        )
        for name in compare:
            a, b = torch_out[name].astype(np.float64), ort_out[name].astype(np.float64)
            if spec.canonical is not None:
                a, b = spec.canonical(name, a), spec.canonical(name, b)
            if a.shape != b.shape:
                raise ExportError(
                    f"ONNX output '{name}' has shape {b.shape}, torch {a.shape}",
                    onnx_path,
                    "report this bug",
                )
            if a.size:
                max_diff = max(max_diff, float(np.max(np.abs(a - b))))
        if spec.agreement_output:
            a, b = torch_out[spec.agreement_output], ort_out[spec.agreement_output]
            agree += int(np.sum(_decisions(a) == _decisions(b)))
            total += len(_decisions(a))
        rows += len(next(iter(feeds.values())))
    parity = {
        "max_abs_diff": max_diff,
        "agreement": (agree / total) if total else None,
        "batches": len(spec.batches),
        "rows": rows,
        "tolerance": spec.tolerance,
        "onnxruntime_seconds": round(seconds, 4),
    }
    if not max_diff <= spec.tolerance:
        raise ExportError(
            f"ONNX output differs from PyTorch by {max_diff:.2e} (tolerance {spec.tolerance:.0e})",
            onnx_path,
            "the export is wrong; do not deploy it — report this with --verbose",
        )
    return parity


def _decisions(values: np.ndarray) -> np.ndarray:
    if values.ndim >= 2 and values.shape[-1] > 1:
        return values.argmax(axis=-1).reshape(len(values), -1)
    return (values.reshape(len(values), -1) > 0.5).astype(np.int64)
