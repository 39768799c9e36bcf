"""The `tl` command line. Imports no torch until a command that trains needs it."""

from __future__ import annotations

import errno
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click
from tl.core import TLError
from tl.core.errors import EXIT_USER_ERROR

from .options import run_options

_ARGV: list[str] = []  # this invocation's arguments, for `tl run --devices N` → torchrun


def _verbose_requested() -> bool:
    return "--verbose" in sys.argv[1:] or os.environ.get("TL_VERBOSE") == "1"


class PluginCommands(click.Group):
    """``tl run PLUGIN`` / ``tl pretrain PLUGIN``: one subcommand per installed plugin,
    built on demand so that only the asked-for plugin is imported."""

    def __init__(self, *args: Any, action: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.action = action

    def list_commands(self, ctx: click.Context) -> list[str]:
        from tl.core.registry import _entry_points

        return sorted(_entry_points())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from tl.core.registry import load_plugin

        plugin = load_plugin(name)
        return _plugin_command(plugin, self.action)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        # click turns an unknown name into a usage error; we want load_plugin's message
        name = args[0]
        return name, self.get_command(ctx, name), args[1:]


def _plugin_command(plugin: Any, action: str) -> click.Command:
    def callback(**options: Any) -> None:
        from tl.core.requirements import require_training

        require_training(plugin, action)  # before anything imports torch
        from tl.core.progress import ProgressReporter
        from tl.core.run import pretrain_plugin, run_plugin

        options.pop("verbose", None)
        devices = options.pop("devices", None)
        if devices and devices > 1 and "WORLD_SIZE" not in os.environ:
            from tl.core.distributed import launch, strip_devices

            sys.exit(launch(devices, strip_devices(_ARGV)))
        reporter = ProgressReporter()
        fn = run_plugin if action == "run" else pretrain_plugin
        run_dir = fn(plugin, options, reporter)
        if os.environ.get("RANK", "0") == "0":
            click.echo(str(run_dir))

    verb = "Fine-tune, evaluate, export" if action == "run" else "Pretrain a backbone"
    return click.Command(
        name=plugin.name,
        params=run_options(plugin, action),
        callback=callback,
        help=f"{verb}: {plugin.description}",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tl", prog_name="tl")
def cli() -> None:
    """tl — transfer learning: adapt a pretrained model to your data, export ONNX."""


@cli.command("plugins")
def plugins_command() -> None:
    """List installed plugins."""
    from tl.core.registry import KNOWN, list_plugins

    infos = list_plugins()
    if not infos:
        click.echo("no plugins installed — e.g. pip install ./plugins/medical")
    rows = [
        (i.name, i.distribution, i.version, f"BROKEN: {i.error}" if i.error else i.description)
        for i in infos
    ]
    widths = [max(len(row[col]) for row in rows) for col in range(3)] if rows else []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[3]]))
    missing = sorted(set(KNOWN) - {i.name for i in infos})
    if missing:
        click.echo(f"not installed: {', '.join(missing)} (pip install ./plugins/<name>)")


@cli.command("demo")
@click.argument("plugin_name", metavar="PLUGIN")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", type=click.Choice(["small", "full"]), default="small", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--verbose", is_flag=True, help="Show tracebacks.")
def demo_command(plugin_name: str, directory: Path, size: str, seed: int, verbose: bool) -> None:
    """Write a generated sample dataset for PLUGIN into DIRECTORY, with a README.md saying
    what each file is for, and print the commands to run on it next."""
    import shlex

    from tl.core import write_text_atomic
    from tl.core.registry import load_plugin

    plugin = load_plugin(plugin_name)
    root = Path(plugin.demo(directory, size=size, seed=seed))
    guide = plugin.demo_guide(root)
    made_by = f"tl demo {plugin.name} {shlex.quote(str(root))} --size {size} --seed {seed}"
    title = f"{plugin.name} demo data (`{made_by}`)"
    write_text_atomic(root / "README.md", guide.markdown(title))
    click.echo(str(root))  # stdout's last line: the root, for scripts
    steps = "\n".join(f"  {command}" for command in guide.commands)
    click.echo(f"wrote {root / 'README.md'} (what each file is for); next:\n{steps}", err=True)


cli.add_command(
    PluginCommands(name="run", action="run", help="Fine-tune → evaluate → export ONNX → report.")
)
cli.add_command(
    PluginCommands(
        name="pretrain",
        action="pretrain",
        help="Pretrain a backbone (self-supervised or on a source task).",
    )
)


@cli.command("distill")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=Path))
@click.option("--student", required=True, help="Smaller timm backbone, e.g. resnet10t.")
@click.option("--alpha", type=float, help="Weight of the teacher's soft targets (default 0.5).")
@click.option("--temperature", type=float, help="Softening temperature T (default 4).")
@click.option("--weights", help="Student init: none | hub | PATH (default none).")
@click.option("--epochs", type=int, help="Epochs (default: the teacher's).")
@click.option("--batch-size", type=int, help="Batch size (default: the teacher's).")
@click.option("--lr", type=float, help="Peak learning rate (default: the teacher's).")
@click.option("--weight-decay", type=float, help="Weight decay (default: the teacher's).")
@click.option("--patience", type=int, help="Early stopping patience (default: the teacher's).")
@click.option("--seed", type=int, help="Seed of the student's init (default: the teacher's).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Device.")
@click.option("--data", type=click.Path(path_type=Path), help="Where the teacher's data lives now.")
@click.option("--out", type=click.Path(path_type=Path), help="Parent of the run directory.")
@click.option("--track", type=click.Choice(["none", "mlflow"]), help="Experiment tracking.")
@click.option("--verbose", is_flag=True, help="Show tracebacks on errors.")
def distill_command(run_dir: Path, **options: Any) -> None:
    """Distill a finished image classification run into a smaller student backbone."""
    from tl.core.requirements import require_training

    require_training(_run_plugin_name(run_dir), "distill")
    from tl.core.distill import distill_run
    from tl.core.progress import ProgressReporter

    options.pop("verbose", None)
    click.echo(str(distill_run(run_dir, options, ProgressReporter())))


def _run_plugin_name(run_dir: Path) -> str:
    """The plugin a run directory was made by (``config.yaml``), or ``"<plugin>"``."""
    import yaml

    try:
        return str(yaml.safe_load((Path(run_dir) / "config.yaml").read_text())["plugin"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return "<plugin>"


from .export_command import export_command  # noqa: E402
from .runtime_commands import evaluate_command, predict_command  # noqa: E402
from .tune_command import tune_group  # noqa: E402

cli.add_command(tune_group)
from .serve_command import serve_command  # noqa: E402

cli.add_command(predict_command)
cli.add_command(export_command)
cli.add_command(serve_command)
cli.add_command(evaluate_command)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors with exit code 2, tracebacks only with --verbose."""
    args = sys.argv[1:] if argv is None else argv
    _ARGV[:] = list(args)
    os.environ.setdefault("TL_COMMAND_LINE", " ".join(["tl", *args]))
    try:
        cli.main(args=args, prog_name="tl", standalone_mode=False)
    except TLError as exc:
        if _verbose_requested():
            traceback.print_exc()
        click.echo(exc.line(), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo(
            "error: interrupted (Ctrl-C) — rerun, or continue with --resume RUN_DIR", err=True
        )
        sys.exit(130)
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `tl`, `tl run`: the help, as is
            click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            sys.exit(0)
        click.echo(usage_error_line(exc), err=True)
        sys.exit(EXIT_USER_ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USER_ERROR if exc.exit_code in (1, 2) else exc.exit_code)
    except KeyboardInterrupt:
        click.echo(
            "error: interrupted (Ctrl-C) — rerun, or continue with --resume RUN_DIR", err=True
        )
        sys.exit(130)
    except MemoryError:
        click.echo("error: out of memory — lower --batch-size or --image-size", err=True)
        sys.exit(EXIT_USER_ERROR)
    except OSError as exc:
        fix = _OS_ERROR_FIXES.get(exc.errno or 0)
        if fix is None:
            _unexpected(exc)
        if _verbose_requested():
            traceback.print_exc()
        click.echo(
            f"error: {os.strerror(exc.errno)} ({exc.filename or 'output'}) — {fix}", err=True
        )
        sys.exit(EXIT_USER_ERROR)
    except Exception as exc:
        _unexpected(exc)


_NO_SPACE = "free disk space and rerun (or --resume RUN_DIR); files already written are intact"
_NO_ACCESS = "check the permissions, or choose a writable --out"
_OS_ERROR_FIXES = {
    errno.ENOSPC: _NO_SPACE,
    errno.EDQUOT: _NO_SPACE,
    errno.EROFS: _NO_ACCESS,
    errno.EACCES: _NO_ACCESS,
    errno.EPERM: _NO_ACCESS,
    errno.ENOENT: "check the path",
    errno.EISDIR: "pass a file, not a folder",
    errno.ENOTDIR: "check the path: a part of it is a file, not a folder",
}


def usage_error_line(exc: click.UsageError) -> str:
    """click's usage errors (bad flag value, unknown flag) as DESIGN's one line."""
    command = exc.ctx.command_path if exc.ctx is not None else "tl"
    what = " ".join(exc.format_message().split())
    what = what[:1].lower() + what[1:]
    return f"error: {what.rstrip('.')} ({command}) — see '{command} --help'"


def _unexpected(exc: BaseException) -> None:
    """An unexpected bug: say so in one line unless --verbose."""
    if _verbose_requested():
        traceback.print_exc()
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    click.echo(
        f"error: unexpected {type(exc).__name__}: {first} — rerun with --verbose and report it",
        err=True,
    )
    sys.exit(1)


if __name__ == "__main__":  # torchrun -m tl.cli.main
    main()
