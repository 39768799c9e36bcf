"""`tl serve`: run directories (or exported .onnx variants) behind an HTTP inference server —
the Open Inference Protocol (KServe v2), a raw-data endpoint, dynamic batching. No torch."""

from __future__ import annotations

from pathlib import Path

import click
from tl.core.option_types import FiniteRange


@click.command("serve")
@click.argument(
    "models", nargs=-1, required=True, metavar="RUN_DIR|MODEL.onnx...",
    type=click.Path(path_type=Path),
)  # fmt: skip
@click.option(
    "--name", "names", multiple=True, metavar="NAME",
    help="Model name in URLs, one per RUN_DIR in order (default: the run directory's name; "
    "RUN/model.int8.onnx → RUN-int8).",
)  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port (0: any free one; the log says which).")  # fmt: skip
@click.option("--max-batch", type=click.IntRange(min=1), default=32, show_default=True,
              help="Most items per onnxruntime call (1: no batching).")  # fmt: skip
@click.option("--max-delay-ms", type=FiniteRange(0, 10_000), default=5.0, show_default=True,
              help="Longest a request waits for others to share its batch.")  # fmt: skip
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="cuda only when a GPU is really there (auto).")  # fmt: skip
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="onnxruntime threads per model (default: onnxruntime's, all cores).")  # fmt: skip
@click.option("--max-body-mb", type=FiniteRange(min=0, min_open=True), default=64.0,
              show_default=True, help="Largest request body; larger ones are answered 413.")  # fmt: skip
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="One stderr line per request.")  # fmt: skip
@click.option("--verbose", is_flag=True, help="Show tracebacks of start-up errors.")
def serve_command(models: tuple[Path, ...], names: tuple[str, ...], **flags: object) -> None:
    """Serve models over HTTP: KServe v2 / Triton clients (POST /v2/models/NAME/infer) and
    tl predict's inputs (POST /v1/models/NAME/predict), with dynamic batching, /metrics
    (Prometheus) and /v2/health/ready. SIGTERM drains the requests in flight, exit 0."""
    from tl.core.serving import ServeOptions, serve

    flags.pop("verbose", None)
    serve(ServeOptions(paths=list(models), names=list(names), **flags))  # type: ignore[arg-type]
