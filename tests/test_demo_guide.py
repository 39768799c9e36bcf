"""`tl demo` for a plugin without a guide of its own, and the recsys demo's files.

The demos of the installed plugins (their README.md, the printed commands, the commands
parsed and run in order) are tests/test_newcomer_walk.py's: it generates each demo once."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from cli_inprocess import invoke

#: the shell word `DemoGuide.latest_run` makes: the newest run directory with a prefix
LATEST = re.compile(r"^\$\(ls -d (?P<out>\S+)/(?P<prefix>\S+)-\* \| tail -1\)$")


def _parse(argv: list[str]) -> click.Context:
    """``argv`` (after ``tl``) parsed by the real CLI down to its command; nothing runs."""
    from tl.cli.main import cli

    ctx = click.Context(cli, info_name="tl")
    command: click.Command = cli
    args = list(argv)
    while isinstance(command, click.Group):
        name, command, args = command.resolve_command(ctx, args)
        assert command is not None, argv
        if isinstance(command, click.Group):
            ctx = click.Context(command, info_name=name, parent=ctx)
    return command.make_context(name, args, parent=ctx)


def test_the_default_guide_lists_the_files_and_runs_then_predicts(tmp_path, monkeypatch) -> None:
    import tl.core.registry as registry
    from toy_plugin import ToyPlugin

    monkeypatch.setattr(registry, "load_plugin", lambda name: ToyPlugin())
    monkeypatch.chdir(tmp_path)
    code, _, stderr = invoke("demo", "toy", "my data")
    assert code == 0, stderr
    readme = Path("my data", "README.md").read_text(encoding="utf-8")
    assert "- `data.npz` — generated data" in readme
    commands = ToyPlugin().demo_guide(Path("my data")).commands
    assert [shlex.split(c)[1] for c in commands] == ["run", "predict"]
    for command in commands:
        words = shlex.split(command)
        assert words[words.index("--data") + 1] == "my data"
        _parse(["." if LATEST.match(w) else w for w in words[1:]])


def test_recsys_demo_writes_only_the_logs_it_uses(tmp_path) -> None:
    pytest.importorskip("tl_recsys")
    from tl_recsys.plugin import RecsysPlugin

    root = RecsysPlugin().demo(tmp_path / "recsys")
    assert sorted(p.name for p in root.iterdir()) == ["market_a.csv", "market_b.csv", "recent.csv"]
