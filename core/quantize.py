"""int8 variants: onnxruntime static quantization (QDQ, per-channel weights), verified.

Calibration feeds are real training items read by the plugin's own ``read_batches``. A
variant whose monitored metric drops more than allowed is quantized again with the most
sensitive nodes left in float — first the first and last layers, then the nodes that add
the most error as measured by onnxruntime's own QDQ debugger (the fall in signal-to-
quantization-noise ratio, fp32 vs int8, from a node's input to its output) — and when no
attempt passes there is no model file, only the error. Never imports torch.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .fileio import atomic_path

#: ops whose weights make a "layer" (the first and last of these stay float on retry)
LAYER_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
#: items fed through both models to rank nodes by the error they add (all activations kept)
SENSITIVITY_ITEMS = 8


class FeedReader:
    """onnxruntime's CalibrationDataReader protocol over feeds held in memory."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._next = iter(self._feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._next, None)

    def rewind(self) -> None:
        self._next = iter(self._feeds)

    def __iter__(self) -> Any:  # qdq_loss_debug iterates where the calibrator calls get_next
        return iter(self._feeds)


def preprocess(fp32: Path, out: Path) -> Path:
    """onnxruntime's recommended pre-processing (shape inference, Conv+BN fusion …); the
    model as it is when that fails (e.g. an op the symbolic shape inference lacks)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(fp32), str(out), skip_symbolic_shape=False)
    except Exception:
        try:
            quant_pre_process(str(fp32), str(out), skip_symbolic_shape=True)
        except Exception:
            shutil.copyfile(fp32, out)
    return out


def quantize(source: Path, out: Path, feeds: Sequence[dict], in_float: Sequence[str]) -> None:
    """QDQ int8 of ``source`` into ``out``: uint8 activations, int8 per-channel weights,
    min/max calibration on ``feeds``, the nodes ``in_float`` left as they are."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    quantize_static(
        str(source),
        str(out),
        FeedReader(feeds),  # type: ignore[arg-type]
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(in_float),
        calibrate_method=CalibrationMethod.MinMax,
    )


def graph_nodes(path: Path) -> list[Any]:
    import onnx

    return list(onnx.load(str(path), load_external_data=False).graph.node)


def first_last_layers(path: Path) -> list[str]:
    """Names of the first and the last weight layer (in graph order)."""
    layers = [n.name for n in graph_nodes(path) if n.op_type in LAYER_OPS and n.name]
    return list(dict.fromkeys(layers[:1] + layers[-1:]))


def output_tail(path: Path) -> list[str]:
    """Nodes after the last weight layer (temperature, softmax/sigmoid, squeeze …): cheap,
    and quantizing their outputs would round every score to one of 256 levels."""
    nodes = graph_nodes(path)
    last = max((k for k, n in enumerate(nodes) if n.op_type in LAYER_OPS), default=None)
    return [] if last is None else [n.name for n in nodes[last + 1 :] if n.name]


def node_sensitivity(
    source: Path, qdq: Path, feeds: Sequence[dict], work: Path
) -> list[tuple[str, float]]:
    """(node, dB of signal-to-noise it loses) for every node whose output was quantized,
    worst first: SQNR(fp32, int8) of its input minus that of its output."""
    from onnxruntime.quantization import qdq_loss_debug as dbg

    float_aug, qdq_aug = work / "float.aug.onnx", work / "qdq.aug.onnx"
    dbg.modify_model_output_intermediate_tensors(str(source), str(float_aug))
    dbg.modify_model_output_intermediate_tensors(str(qdq), str(qdq_aug))
    float_acts = dbg.collect_activations(str(float_aug), FeedReader(feeds))  # type: ignore[arg-type]
    qdq_acts = dbg.collect_activations(str(qdq_aug), FeedReader(feeds))  # type: ignore[arg-type]
    errors = dbg.compute_activation_error(dbg.create_activation_matching(qdq_acts, float_acts))
    sqnr = {name: float(err["xmodel_err"]) for name, err in errors.items() if "xmodel_err" in err}
    ranked: list[tuple[str, float]] = []
    for node in graph_nodes(source):
        out = node.output[0] if node.output else None
        if not node.name or out not in sqnr or not np.isfinite(sqnr[out]):
            continue
        before = [sqnr[i] for i in node.input if i in sqnr and np.isfinite(sqnr[i])]
        lost = (min(before) if before else 100.0) - sqnr[out]
        ranked.append((node.name, round(lost, 3)))
    return sorted(ranked, key=lambda item: -item[1])


@dataclass
class Attempt:
    nodes_in_float: list[str]
    why: str
    drop: float | None = None
    result: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"nodes_in_float": self.nodes_in_float, "why": self.why, "drop": self.drop}


@dataclass
class Int8Outcome:
    passed: bool
    attempts: list[Attempt]

    @property
    def final(self) -> Attempt:
        return self.attempts[-1]


def quantize_verified(
    fp32: Path,
    out: Path,
    feeds: Sequence[dict],
    check: Callable[[Path], dict[str, Any]],
    stamp: Callable[[Path, list[str]], None],
    max_drop: float,
    log: Callable[[str], None] = lambda line: None,
) -> Int8Outcome:
    """Quantize ``fp32`` to ``out``, retrying with more nodes in float while ``check``'s
    ``monitored_drop`` exceeds ``max_drop``. ``out`` exists afterwards only if it passed;
    ``stamp(path, nodes_in_float)`` writes the tl metadata into a candidate, ``check(path)``
    returns its comparison with the fp32 model."""
    attempts: list[Attempt] = []
    with tempfile.TemporaryDirectory(prefix="tl-int8-") as tmp:
        work = Path(tmp)
        source = preprocess(fp32, work / "pre.onnx")
        candidate = work / "model.int8.onnx"
        tail = output_tail(source)
        plan = [Attempt(tail, "every layer quantized, output tail in float")]
        edges = first_last_layers(source)
        if edges:
            plan.append(Attempt(edges + tail, "first and last layers in float"))
        measured = False
        while plan:
            attempt = plan.pop(0)
            quantize(source, candidate, feeds, attempt.nodes_in_float)
            stamp(candidate, attempt.nodes_in_float)
            attempt.result = check(candidate)
            attempt.drop = float(attempt.result["monitored_drop"])
            attempts.append(attempt)
            ok = attempt.drop <= max_drop
            log(
                f"int8 attempt {len(attempts)} ({attempt.why}): {attempt.result['monitor']} "
                f"drop {attempt.drop:.4f} {'≤' if ok else '>'} {max_drop:g}"
            )
            if ok:
                with atomic_path(out) as tmp_out:
                    shutil.copyfile(candidate, tmp_out)
                return Int8Outcome(True, attempts)
            if not plan and not measured:
                plan, measured = (
                    _sensitive_plan(source, candidate, feeds, work, edges + tail, log),
                    True,
                )
    return Int8Outcome(False, attempts)


def _sensitive_plan(
    source: Path,
    candidate: Path,
    feeds: Sequence[dict],
    work: Path,
    edges: list[str],
    log: Callable[[str], None],
) -> list[Attempt]:
    """Two more attempts: ``edges`` (first/last layers, output tail) plus the worst ~10 %,
    then ~25 %, of the nodes by measured error."""
    try:
        ranked = node_sensitivity(source, candidate, _first_items(feeds), work)
    except Exception as exc:  # the debugger cannot augment every graph: no more attempts
        log(f"per-node error not measurable: {str(exc).splitlines()[0][:160]}")
        return []
    names = [name for name, lost in ranked if lost > 0 and name not in edges]
    plan: list[Attempt] = []
    for share in (0.10, 0.25):
        k = max(1, round(share * len(ranked)))
        chosen = edges + names[:k]
        if names and (not plan or chosen != plan[-1].nodes_in_float):
            why = f"first/last layers and the {min(k, len(names))} nodes adding the most error"
            plan.append(Attempt(chosen, why))
    return plan


def _first_items(feeds: Sequence[dict]) -> list[dict]:
    """At most `SENSITIVITY_ITEMS` items of ``feeds`` (every activation of these is kept)."""
    out: list[dict] = []
    count = 0
    for feed in feeds:
        rows = len(next(iter(feed.values())))
        take = min(rows, SENSITIVITY_ITEMS - count)
        if take <= 0:
            break
        out.append({k: v[:take] for k, v in feed.items()})
        count += take
    return out


def export_int8(job: Any, calibration: int, max_drop: float) -> dict[str, Any]:
    """RUN_DIR/model.int8.onnx, verified on the run's test split, and its export.json
    record; an `ExportError` (and no model file) when every attempt loses too much."""
    import logging

    from .errors import ExportError
    from .variant_eval import compare, cpu_model, read_split, stamp_variant, write_export_json

    source = job.source
    out = source.run_dir / "model.int8.onnx"
    out.unlink(missing_ok=True)  # an earlier variant must not outlive a failed export
    job.log(f"calibrating on up to {calibration} training items")
    calib = read_split(job.plugin, job.reference, source, "train", limit=calibration)
    feeds = [batch.inputs for batch in calib.batches]

    def stamp(path: Path, nodes: list[str]) -> None:
        stamp_variant(source.model_path, path, "int8", nodes_in_float=nodes)

    def check(path: Path) -> dict[str, Any]:
        return compare(job.plugin, source, job.reference, cpu_model(path), job.test)

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a warning per weight it skips
    try:
        outcome = quantize_verified(source.model_path, out, feeds, check, stamp, max_drop, job.log)
    finally:
        root.setLevel(level)
    final = outcome.final
    entry = job.entry(
        "int8",
        out,
        final.result,
        nodes_in_float=final.nodes_in_float,
        attempts=[a.record() for a in outcome.attempts],
        calibration={"split": "train", "items": calib.items},
        max_drop=max_drop,
        verified=outcome.passed,
    )
    if not outcome.passed:
        entry["file"] = None
        write_export_json(source.run_dir, "int8", entry)
        raise ExportError(
            f"the int8 model loses {final.drop:.4f} {final.result['monitor']} on the test split "
            f"(more than --max-drop {max_drop:g}) after {len(outcome.attempts)} attempts; "
            "no model.int8.onnx written",
            source.run_dir,
            "calibrate on more items (--calibration), allow more (--max-drop), or use fp16",
        )
    write_export_json(source.run_dir, "int8", entry)
    return entry
