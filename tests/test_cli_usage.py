"""Usage errors and --config values: one line `error: … — …`, exit 2, the same checks for a
flag and for a --config key (click's own multi-line usage block never reaches the user)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tl.core.registry as registry
import yaml
from cli_inprocess import invoke as tl
from toy_plugin import ToyPlugin

ARGS = ["--weights", "none", "--batch-size", "24", "--seed", "0", "--device", "cpu",
        "--patience", "0", "--epochs", "1"]  # fmt: skip


@pytest.fixture(autouse=True)
def toy_plugin(monkeypatch):
    real = registry.load_plugin
    monkeypatch.setattr(registry, "load_plugin", lambda n: ToyPlugin() if n == "toy" else real(n))


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and " — " in lines[0], stderr
    return lines[0]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--epochs", "abc"], "'abc' is not a valid integer"),
        (["--epochs", "0"], "0 is not in the range x>=1"),
        (["--lr", "nan"], "not a finite number"),
        (["--lr", "-1e-3"], "not in the range x>0"),
        (["--dropout", "1"], "not in the range 0<=x<1"),
        (["--warmup", "inf"], "not in the range"),
        (["--seed", "-1"], "not in the range"),
        (["--optimizer", "adam"], "'adam' is not one of 'adamw', 'sgd'"),
        (["--no-such-flag"], "no such option '--no-such-flag'"),
    ],
)
def test_a_bad_flag_is_one_line_naming_the_command(flags, expected, toy_data, tmp_path):
    code, _, stderr = tl("run", "toy", "--data", str(toy_data), "--out", str(tmp_path), *flags)
    assert code == 2
    line = one_line(stderr)
    assert expected in line and "(tl run toy)" in line and "tl run toy --help" in line
    assert not list(tmp_path.iterdir()), "a usage error must not create a run directory"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"lr": float("nan")}, "bad value for lr: nan is not a finite number"),
        ({"epochs": 0}, "bad value for epochs: 0 is not in the range x>=1"),
        ({"batch_size": "many"}, "bad value for batch_size: 'many' is not a valid integer"),
        ({"compare_scratch": "yes please"}, "bad value for compare_scratch"),
    ],
)
def test_a_bad_config_value_is_the_same_error_as_the_flag(config, expected, toy_data, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": str(toy_data), **config}))
    code, _, stderr = tl("run", "toy", "--config", str(path), "--out", str(tmp_path / "runs"))
    assert code == 2
    line = one_line(stderr)
    assert expected in line and str(path) in line


def test_config_values_are_converted_like_flags_and_flags_win(toy_data, tmp_path):
    # YAML reads 3e-3 (no dot) as a string: the flag's type makes it a float
    path = tmp_path / "run.yaml"
    path.write_text(f"data: {toy_data}\nlr: 3e-3\nepochs: 3\nweight_decay: '0.01'\n")
    code, stdout, stderr = tl("run", "toy", "--config", str(path), *ARGS, "--out", str(tmp_path))
    assert code == 0, stderr[-2000:]
    run = Path(stdout.strip().splitlines()[-1])
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["lr"] == 3e-3 and saved["weight_decay"] == 0.01
    assert saved["epochs"] == 1  # --epochs 1 on the command line beats epochs: 3
    assert len(json.loads((run / "metrics.json").read_text())) > 0


def test_a_config_path_that_is_a_folder_or_not_text_is_one_line(toy_data, tmp_path):
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00garbage")
    for config, expected in (("", "the config path is a folder"), (str(tmp_path), "a folder"),
                             (str(tmp_path / "bin.yaml"), "not UTF-8")):  # fmt: skip
        code, _, stderr = tl("run", "toy", "--data", str(toy_data), "--config", config)
        assert code == 2 and expected in one_line(stderr), stderr


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_predict_help_lists_every_installed_plugins_own_options(command):
    from click.testing import CliRunner
    from tl.cli.main import cli

    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    text = result.output
    for plugin, flag in [("driving", "--score-threshold"), ("fraud", "--target"),
                         ("medical", "--window"), ("recsys", "--top-k")]:  # fmt: skip
        section = text.split(f"Options of {plugin} models", 1)
        assert len(section) == 2 and flag in section[1].split("Options of", 1)[0], text
