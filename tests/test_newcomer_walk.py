"""The scripted newcomer walk (issue 17): what someone new types first, checked end to end.

For every installed plugin, one `tl demo PLUGIN DIR` (the default, small size) shared by
all its tests: DIR/README.md names every generated file, the next commands are printed and
in the README, they parse with options that exist, and they run in order on that data — at
tiny sizes (`QUICK`, `TINY`: appended where the command has the option; the last value of
an option wins) — each exiting 0 and leaving what the next one reads. And the first
commands of all: bare `tl` and `tl run` print their usage (exit 0), `tl plugins` prints
aligned columns.

The commands run in this process (no interpreter start-up per command); the shell word
``$(ls -d runs/PREFIX-* | tail -1)`` that `DemoGuide.latest_run` writes is expanded the way
the shell would.
"""

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
#: every training command: one epoch on the CPU, same seed, no second model from scratch
#: (`--weights` turns `--compare-scratch` on; other tests cover it)
QUICK = {"--epochs": "1", "--device": "cpu", "--seed": "0", "--patience": "0",
         "--no-compare-scratch": ""}  # fmt: skip
#: per plugin, the smallest model that still runs the whole path (pretrain and fine-tune
#: get the same sizes, so the weights fit)
TINY: dict[str, dict[str, str]] = {
    "medical": {"--backbone": "resnet10t", "--image-size": "32", "--batch-size": "64"},
    "driving": {
        "--backbone": "resnet10t",
        "--image-size": "64",
        "--head-channels": "16",
        "--batch-size": "32",
        "--no-baseline": "",
    },
    "fraud": {"--d-token": "8", "--n-blocks": "1", "--n-heads": "1", "--batch-size": "256"},
    "recsys": {
        "--d-model": "8",
        "--layers": "1",
        "--heads": "1",
        "--max-len": "8",
        "--batch-size": "128",
    },
}
#: a column of each plugin's `tl predict` output, and whether every input gets a row
#: (a detector after one epoch may find nothing)
OUTPUT = {"medical": ("predicted", True), "fraud": ("fraud_probability", True),
          "recsys": ("item_id", True), "driving": ("category", False)}  # fmt: skip


def _installed() -> list[str]:
    from tl.core.registry import _entry_points

    return sorted(_entry_points())


def _parse(argv: list[str]) -> click.Context:
    """``argv`` (after ``tl``) parsed by the real CLI down to its command; nothing runs."""
    from tl.cli.main import cli

    ctx = click.Context(cli, info_name="tl")
    command: click.Command = cli
    args = list(argv)
    while isinstance(command, click.Group):
        name, found, args = command.resolve_command(ctx, args)
        assert found is not None, argv
        command = found
        if isinstance(command, click.Group):
            ctx = click.Context(command, info_name=name, parent=ctx)
    return command.make_context(name, args, parent=ctx)


def _accepted(argv: list[str]) -> set[str]:
    """The flags the real CLI accepts for ``argv`` (after ``tl``), e.g. ``{"--epochs", …}``."""
    params = _parse(argv).command.params
    return {flag for param in params for flag in (*param.opts, *param.secondary_opts)}


def _tiny(name: str, argv: list[str]) -> list[str]:
    """``argv`` with the quick and tiny settings the command has appended."""
    if argv[0] == "predict":
        return argv
    accepted = _accepted(argv)
    extra: list[str] = []
    for flag, value in {**QUICK, **TINY.get(name, {})}.items():
        if flag in accepted:
            extra += [flag, value] if value else [flag]
    return argv + extra


def _expand(word: str) -> str:
    """``$(ls -d runs/PREFIX-* | tail -1)`` as the shell expands it; other words as they are."""
    match = LATEST.match(word)
    if not match:
        return word
    runs = sorted(Path(match["out"]).glob(f"{match['prefix']}-*"))
    assert runs, f"no run directory {word} yet: the commands are out of order"
    shell = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, text=True)
    assert shell.stdout == str(runs[-1]), (word, shell.stdout, shell.stderr)
    return str(runs[-1])


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


@pytest.fixture(scope="module")
def one_thread():
    """Two shared cores: torch's intra-op threads would only wait on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_demo_readme_commands_run_in_order(demo, one_thread, monkeypatch):
    name, cwd, _, _ = demo
    monkeypatch.chdir(cwd)
    commands = _guide(name, Path("data")).commands
    made: list[Path] = []
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "tl", command
        argv = _tiny(name, [_expand(word) for word in words[1:]])
        code, stdout, stderr = invoke(*argv)
        assert code == 0, f"{shlex.join(argv)}\n{stderr[-3000:]}"
        if argv[0] in ("run", "pretrain"):
            made.append(Path(stdout.strip().splitlines()[-1]))
            assert made[-1].is_dir(), stdout[-2000:]
    run = made[-1]
    assert (run / "model.onnx").is_file() and (run / "report.md").is_file()
    predict = shlex.split(commands[-1])
    assert predict[1] == "predict"
    lines = Path(predict[predict.index("--out") + 1]).read_text(encoding="utf-8").splitlines()
    column, every_input = OUTPUT.get(name, ("", False))
    assert column in lines[0].split(","), lines[:2]
    assert len(lines) > 1 or not every_input, lines[:2]
    if name == "fraud":  # one score per transaction of the file to score
        scored = predict[predict.index("--data") + 1]
        assert len(lines) == len(Path(scored).read_text(encoding="utf-8").splitlines())


def test_bare_tl_prints_its_usage():
    """The console script itself, as a newcomer types it: usage on stdout, exit 0."""
    tl = Path(sys.executable).with_name("tl")
    done = subprocess.run([str(tl)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "100"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: tl "), done.stdout
    for command in ("demo", "run", "pretrain", "predict", "evaluate", "plugins"):
        assert re.search(rf"^  {command}\s", done.stdout, flags=re.MULTILINE), done.stdout
    assert "error" not in done.stderr.lower(), done.stderr


def test_bare_tl_run_lists_the_plugins():
    code, stdout, stderr = invoke("run")
    assert code == 0, stderr
    assert stdout.startswith("Usage: tl run "), stdout
    assert not stderr.strip(), stderr
    listed = re.findall(r"^  (\S+)\s{2,}\S", stdout.split("Commands:", 1)[1], flags=re.MULTILINE)
    assert listed == _installed(), stdout


def test_tl_plugins_columns_align():
    code, stdout, stderr = invoke("plugins")
    assert code == 0, stderr
    lines = stdout.rstrip("\n").splitlines()
    assert sorted(line.split()[0] for line in lines) == _installed(), stdout
    # a column starts where a value follows two or more spaces (descriptions have single ones)
    starts = [[m.start(1) for m in re.finditer(r"(?:^|\s{2,})(\S)", line)] for line in lines]
    assert all(len(s) >= 4 for s in starts), stdout
    assert all(s[:4] == starts[0][:4] for s in starts), stdout


def _in(cwd: Path, *argv: str) -> tuple[int, str, str]:
    before = os.getcwd()
    os.chdir(cwd)
    try:
        return invoke(*argv)
    finally:
        os.chdir(before)
