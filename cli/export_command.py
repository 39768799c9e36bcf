"""`tl export RUN_DIR`: verified fp16 / int8 variants of a run's model, and Triton model
repositories. Runs with onnxruntime only (no torch), like `tl predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

PRECISIONS = ("fp32", "fp16", "int8")


@click.command("export")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=Path))
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="fp32",
    show_default=True,
    help="fp16: GPU inference (fp32 in/out); int8: static QDQ quantization for CPU.",
)
@click.option(
    "--calibration",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="int8: training items the activation ranges are calibrated on.",
)
@click.option(
    "--max-drop",
    type=click.FloatRange(min=0.0, max=1.0),
    default=0.01,
    show_default=True,
    help="Largest loss of the plugin's monitored metric on the test split a variant may have.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Where the run's data lives now (default: the path in RUN_DIR/config.yaml).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["onnx", "triton"]),
    default="onnx",
    show_default=True,
    help="onnx: RUN_DIR/model.<precision>.onnx; triton: a model repository in --out.",
)
@click.option("--out", type=click.Path(path_type=Path), help="triton: the model repository folder.")
@click.option(
    "--max-batch-size",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="triton: max_batch_size of the model config.",
)
@click.option("--name", help="triton: the model's name (default: the run folder's name).")
@click.option("--verbose", is_flag=True, help="Show tracebacks on errors.")
def export_command(run_dir: Path, **flags: Any) -> None:
    """Export RUN_DIR's model as a verified fp16/int8 variant or a Triton model repository.

    Variants are measured against the fp32 model on the run's test split with the plugin's
    own metrics; results (metric deltas, size and CPU latency ratios, nodes kept in float)
    go to RUN_DIR/export.json. An int8 model that loses more than --max-drop of the
    monitored metric is retried with sensitive nodes in float, and refused (exit 2, no
    file) when it still does.
    """
    from tl.core import ConfigError
    from tl.core.variant_eval import load_run_source

    precision, fmt, out = flags["precision"], flags["fmt"], flags["out"]
    if fmt == "triton" and out is None:
        raise ConfigError("--format triton needs --out REPO", "tl export", "add --out FOLDER")
    if fmt == "onnx" and out is not None:
        raise ConfigError("--out is for --format triton", "tl export", "add --format triton")
    source = load_run_source(run_dir, flags["data"], need_data=precision != "fp32")
    model_path = source.model_path
    if precision != "fp32":
        model_path = _variant(run_dir, precision, flags)
    elif fmt == "onnx":
        click.echo("model.onnx is the fp32 model: nothing to convert", err=True)
    if fmt == "triton":
        from tl.core.triton_repo import model_name, write_repository

        name = flags["name"] or model_name(source.run_dir, precision)
        folder = write_repository(model_path, Path(out), name, flags["max_batch_size"])
        click.echo(f"Triton model '{name}' → {folder}", err=True)
        click.echo(str(folder))
        return
    click.echo(str(model_path))


def _variant(run_dir: Path, precision: str, flags: dict[str, Any]) -> Path:
    from tl.core.variant_eval import prepare_job

    def log(line: str) -> None:
        click.echo(line, err=True)

    job = prepare_job(run_dir, flags["data"], log)
    if precision == "int8":
        from tl.core.quantize import export_int8

        entry = export_int8(job, flags["calibration"], flags["max_drop"])
    else:
        from tl.core.half import export_fp16

        entry = export_fp16(job, flags["max_drop"])
    click.echo(_summary(entry), err=True)
    return job.source.run_dir / entry["file"]


def _summary(entry: dict[str, Any]) -> str:
    parts = [f"{entry['precision']}: size ×{entry['size_ratio']:.3f}"]
    if "monitored_drop" in entry:
        parts.append(f"{entry['monitor']} Δ {-entry['monitored_drop']:+.4f}")
    if "cpu_latency_ratio" in entry:
        parts.append(f"latency ×{entry['cpu_latency_ratio']:.2f}")
    if entry.get("nodes_in_float"):
        parts.append(f"{len(entry['nodes_in_float'])} nodes in float")
    parts.append(f"verified: {entry['verified']}")
    return ", ".join(parts) + " (export.json)"
