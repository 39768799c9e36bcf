"""`tl demo PLUGIN DIR`: README.md names what was generated, and the printed next commands
are real `tl` command lines — for fraud they run, in order, as printed."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
from cli_inprocess import invoke

#: the shell word `DemoGuide.latest_run` makes: the newest run directory with a prefix
LATEST = re.compile(r"^\$\(ls -d (?P<out>\S+)/(?P<prefix>\S+)-\* \| tail -1\)$")


def _installed() -> list[str]:
    from tl.core.registry import _entry_points

    return sorted(_entry_points())


@pytest.fixture(scope="module", params=_installed())
def demo(request, tmp_path_factory) -> tuple[str, Path, str, str]:
    """`tl demo NAME data` run from a fresh folder: (name, that folder, stdout, stderr)."""
    name = request.param
    cwd = tmp_path_factory.mktemp(f"demo-{name}")
    code, stdout, stderr = _in(cwd, "demo", name, "data")
    assert code == 0, stderr[-3000:]
    return name, cwd, stdout, stderr


def _guide(name: str, root: Path):
    from tl.core.registry import load_plugin

    return load_plugin(name).demo_guide(root)


def test_readme_names_every_generated_file(demo) -> None:
    name, cwd, stdout, _ = demo
    assert stdout.strip().splitlines()[-1] == "data"  # scripts read the root from stdout
    readme = (cwd / "data" / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"^- `([^`]+)` — \S", readme, flags=re.MULTILINE)
    for entry in (cwd / "data").iterdir():
        if entry.name != "README.md":
            assert (entry.name + "/" if entry.is_dir() else entry.name) in listed, readme
    for path in listed:
        assert (cwd / "data" / path).exists(), f"README lists {path}, which was not written"


def test_commands_are_printed_and_in_the_readme(demo, monkeypatch) -> None:
    name, cwd, _, stderr = demo
    monkeypatch.chdir(cwd)
    commands = _guide(name, Path("data")).commands
    readme = (cwd / "data" / "README.md").read_text(encoding="utf-8")
    actions = [shlex.split(command)[1] for command in commands]
    assert actions in (["pretrain", "run", "predict"], ["run", "predict"])
    for command in commands:
        assert f"  {command}\n" in stderr
        assert f"\n{command}\n" in readme


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


def test_commands_parse_with_options_that_exist(demo, monkeypatch) -> None:
    from tl.cli.runtime_commands import _plugin_options
    from tl.core.registry import load_plugin

    name, cwd, _, _ = demo
    monkeypatch.chdir(cwd)
    plugin = load_plugin(name)
    made: set[str] = set()  # run-directory prefixes the earlier commands create
    for command in plugin.demo_guide(Path("data")).commands:
        words = shlex.split(command)
        assert words[0] == "tl", command
        argv = []
        for word in words[1:]:
            match = LATEST.match(word)
            if match:
                assert match["out"] == "runs" and match["prefix"] in made, command
                word = str(cwd)  # stands for that run directory
            argv.append(word)
        ctx = _parse(argv)
        action = argv[0]
        made.add(f"pretrain-{name}" if action == "pretrain" else name)
        assert Path(ctx.params["data"]).exists(), command
        if action == "predict":
            _plugin_options(plugin, "predict", ctx.args)  # the plugin's own predict options
        else:
            assert ctx.params["epochs"] is not None, f"name the epochs: {command}"


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


def test_the_fraud_commands_run_as_printed(tmp_path, monkeypatch) -> None:
    """The printed commands in a shell, in order (one epoch each, so the test stays short)."""
    pytest.importorskip("tl_fraud")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",  # two shared cores: intra-op threads only wait on each other
    }
    monkeypatch.chdir(tmp_path)
    code, _, stderr = invoke("demo", "fraud", "tx")
    assert code == 0, stderr
    commands = _guide("fraud", Path("tx")).commands
    for command in commands:
        quick = command if shlex.split(command)[1] == "predict" else f"{command} --epochs 1"
        done = subprocess.run(
            ["bash", "-c", quick], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{quick}\n{done.stderr[-3000:]}"
    predict = shlex.split(commands[-1])
    scores = Path(predict[predict.index("--out") + 1]).read_text().splitlines()
    assert len(scores) == 1 + 500  # header + every row of today.csv
    assert "fraud_probability" in scores[0]


def _in(cwd: Path, *argv: str) -> tuple[int, str, str]:
    before = os.getcwd()
    os.chdir(cwd)
    try:
        return invoke(*argv)
    finally:
        os.chdir(before)
