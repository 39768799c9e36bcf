"""The last steps of a run that write its deliverables: test_predictions.csv and model.onnx
(with the tl metadata and the parity check), and the training fingerprints that let
`tl evaluate` notice evaluation data the run trained on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import Config
from .errors import TLError
from .export import export_onnx
from .fileio import write_text_atomic
from .plugin import ExportSpec, Plugin, TLData
from .progress import ProgressReporter


def export_run(
    plugin: Plugin,
    model: Any,
    data: TLData,
    result: Any,  # tl.core.run.Evaluation
    run_dir: Path,
    reporter: ProgressReporter,
    meta: dict[str, Any],
) -> tuple[dict[str, Any], ExportSpec]:
    """Write test_predictions.csv and model.onnx (tl metadata: core fields, ``meta``, the
    fitted export values, the plugin's own); return the parity figures and the spec."""
    predictions = plugin.predictions(result.test_outputs, data, result.fitted)
    if predictions is not None:
        write_text_atomic(run_dir / "test_predictions.csv", predictions.to_csv(index=False))
    reporter.log("exporting ONNX and checking parity with PyTorch")
    spec = plugin.export_spec(model.cpu().eval(), data, result.fitted, run_dir)
    core_meta = {
        "plugin": plugin.name,
        "plugin_version": plugin.version,
        "api_version": plugin.api_version,
        "task": data.task or plugin.task,
        **meta,
        "labels": data.labels,
        **dict(result.fitted.export),
        **spec.metadata,
    }
    parity = export_onnx(spec, run_dir / "model.onnx", core_meta)
    agreement = "n/a" if parity["agreement"] is None else f"{parity['agreement']:.3f}"
    reporter.log(f"ONNX parity: max abs diff {parity['max_abs_diff']:.2e}, agreement {agreement}")
    return parity, spec


def summary_line(plugin: Plugin, metrics: dict[str, Any]) -> str:
    keys = [plugin.monitor] + [
        k
        for k in ("accuracy", "macro_f1", "auroc", "average_precision", "ndcg@10", "map50")
        if k != plugin.monitor
    ]
    shown = [f"{k}={metrics[k]:.4f}" for k in keys if isinstance(metrics.get(k), float)]
    return "test: " + " ".join(shown)


def record_run_fingerprints(
    plugin: Plugin, data: TLData, config: Config, run_dir: Path, reporter: ProgressReporter
) -> None:
    """``fingerprints.parquet``: the run's training and validation items as `tl evaluate`
    reads them (`tl.core.overlap`). A data folder the runtime cannot read is a note, not a
    failure: the run is complete without it, `tl evaluate` just cannot check for overlap."""
    from .inference import RuntimeConfig
    from .overlap import record_fingerprints
    from .runtime import load_onnx_model

    own_type = getattr(plugin, "predict_options_type", None)
    options = Config(
        RuntimeConfig(data=str(config["data"]), batch_size=int(config["batch_size"]), device="cpu"),
        own_type() if own_type is not None else None,
        command="evaluate",
    )
    try:
        model = load_onnx_model(run_dir / "model.onnx", device="cpu")
        record_fingerprints(plugin, model, Path(config["data"]), options, data.splits)
    except TLError as exc:
        reporter.log(f"note: no training fingerprints for tl evaluate ({exc.line()})")
