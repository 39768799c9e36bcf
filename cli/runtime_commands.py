"""`tl predict` and `tl evaluate`: an ONNX model (a run directory or a .onnx file) on new data,
with onnxruntime only — no torch is imported on this path.

The plugin is known only once the model's metadata is read, so its own options (its
``predict_options_type`` dataclass) are parsed from the arguments left over after the core's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click

from .options import predict_like_options


def uses_runtime_hooks(plugin: Any) -> bool:
    """True when the plugin implements ``read_batches`` (else: its protocol v1 ``predict``)."""
    from tl.core import Plugin

    return getattr(type(plugin), "read_batches", None) is not Plugin.read_batches


def _plugin_options(plugin: Any, name: str, args: list[str]) -> tuple[Any, dict[str, Any]]:
    """The plugin's predict options from ``args``: (its dataclass or None, values by name)."""
    options_type = getattr(plugin, "predict_options_type", None)
    command = click.Command(plugin.name, params=_plugin_params(plugin))
    parsed = command.make_context(f"tl {name} … ({plugin.name} options)", list(args)).params
    if options_type is None:
        return None, parsed
    given = {k: v for k, v in parsed.items() if v is not None and v != ()}
    value = options_type(**given)
    return value, dataclasses.asdict(value)


class _RuntimeCommand(click.Command):
    """Its ``--help`` ends with each installed plugin's own options: which plugin reads the
    model is known only from its metadata, so they cannot be click options of the command."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from tl.core.errors import TLError
        from tl.core.registry import list_plugins, load_plugin

        for info in list_plugins():
            try:
                plugin = load_plugin(info.name)
                params = _plugin_params(plugin)
            except TLError:
                continue
            rows = [row for row in (p.get_help_record(ctx) for p in params) if row]
            if rows:
                with formatter.section(f"Options of {info.name} models (after the ones above)"):
                    formatter.write_dl(rows)
        super().format_epilog(ctx, formatter)


def _plugin_params(plugin: Any) -> list[click.Parameter]:
    from tl.core.config import click_options

    options_type = getattr(plugin, "predict_options_type", None)
    if options_type is not None:
        return list(click_options(options_type, None))
    return list(getattr(plugin, "predict_options", lambda: [])())  # a plugin still on v1


def _runtime_command(name: str, help_text: str) -> click.Command:
    @click.command(
        name,
        cls=_RuntimeCommand,
        help=help_text,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    @click.argument("model_path", metavar="RUN_DIR|MODEL.onnx", type=click.Path(path_type=Path))
    @predict_like_options(with_out=name == "predict")
    @click.pass_context
    def command(ctx: click.Context, model_path: Path, **flags: Any) -> None:
        from tl.core.config import Config
        from tl.core.inference import RuntimeConfig
        from tl.core.registry import load_plugin
        from tl.core.runtime import load_onnx_model
        from tl.core.sinks import check_out

        flags.pop("verbose", None)
        out = Path(flags["out"]) if flags.get("out") else None
        if name == "predict":
            check_out(out)
        model = load_onnx_model(model_path, device=flags["device"])
        plugin = load_plugin(model.plugin)
        own, own_values = _plugin_options(plugin, name, ctx.args)
        core = RuntimeConfig(
            data=str(flags["data"]),
            out=str(out) if out else None,
            batch_size=int(flags["batch_size"]),
            device=str(flags["device"]),
            skip_bad=bool(flags["skip_bad"]),
        )
        if not uses_runtime_hooks(plugin):
            legacy = {k: v for k, v in dataclasses.asdict(core).items() if k != "data"}
            legacy["out"] = flags.get("out")
            _legacy(name, plugin, model, flags["data"], {**legacy, **own_values})
            return
        options = Config(core, own, command=name)  # type: ignore[arg-type]
        if name == "predict":
            _predict(plugin, model, flags["data"], options, out)
        else:
            _evaluate(plugin, model, flags["data"], options, out)

    return command


def _predict(plugin: Any, model: Any, data: Path, options: Any, out: Path | None) -> None:
    from tl.core.inference import predict_to

    summary = predict_to(plugin, model, Path(data), options, out, options["batch_size"])
    if out is not None:
        click.echo(f"{summary.rows} predictions → {out}", err=True)
        click.echo(str(out))


def _evaluate(plugin: Any, model: Any, data: Path, options: Any, out: Path | None) -> None:
    from tl.core.inference import evaluate

    _show_metrics(evaluate(plugin, model, Path(data), options, options["batch_size"]), out)


def _show_metrics(metrics: dict[str, Any], out: Path | None) -> None:
    from tl.core.fileio import write_json_atomic

    if out is not None:
        write_json_atomic(out, metrics)
    click.echo(json.dumps(metrics, indent=2, default=str))


def _legacy(name: str, plugin: Any, model: Any, data: Path, options: dict[str, Any]) -> None:
    """Protocol v1: the plugin's own ``predict``/``evaluate`` (until every plugin migrates)."""
    out = Path(options["out"]) if options.get("out") else None
    if name == "evaluate":
        _show_metrics(plugin.evaluate(model, data, options), out)
        return
    frame = plugin.predict(model, data, options)
    if frame is None:  # the plugin wrote the output itself
        return
    from tl.core.sinks import open_sink

    with open_sink(out) as sink:
        sink.write(frame)
    if out is not None:
        click.echo(f"{len(frame)} predictions → {out}", err=True)
        click.echo(str(out))


predict_command = _runtime_command("predict", "Batch inference with onnxruntime (no torch needed).")
evaluate_command = _runtime_command(
    "evaluate", "Metrics on new labelled data with onnxruntime (no torch needed)."
)
