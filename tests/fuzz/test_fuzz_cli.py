"""Fuzzing `tl run` and `tl predict` of every plugin through the real command line.

* `tl run PLUGIN`: one option at a time gets an odd value (zero, negative, NaN, ±inf, huge,
  text, empty); every option of the command, core and plugin, is a candidate.
* `tl predict RUN`: the input a trained run predicts on is damaged (truncated, overwritten,
  emptied, a column dropped …).

Every case ends with exit 0 and a complete result, or exit 2 and the one line of DESIGN.md
(`error: …`), never a traceback or the "unexpected" exit 1. Runs in-process (main()), so a
case costs a parse, or one tiny epoch when the value is valid.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import click
import pandas as pd
import pytest
from fuzzkit import DEEP
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parents[1]))
from cli_inprocess import invoke  # noqa: E402
from reliability_data import COMMON, PLUGINS  # noqa: E402

# a valid value trains a tiny model for one epoch: fewer examples than the reader fuzzing
# (CI time); TL_FUZZ_EXAMPLES=50 hunts deeper (400 cases, random)
CLI_FUZZ = settings(
    max_examples=DEEP or 6,
    deadline=None,
    derandomize=not DEEP,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ODD = ["0", "-1", "-0.5", "2.5", "nan", "inf", "-inf", "1e30", "1e-30", "abc", "", " "]
# valid for many options: those runs train, so keep them small (a "64" meant 64 blocks or layers)
PLAIN = ["1", "2", "0.1", "0.5", "0.9", "3", "8"]
# --devices N launches torchrun (tested in test_ddp.py); --out/--data are the test's own
NOT_FUZZED = {"data", "out", "devices", "verbose", "epochs"}


def assert_clean_end(code: int, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]
    assert code in (0, 2), f"exit {code}: {stderr[-1500:]}"
    if code == 2:
        errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, stderr[-1500:]
        assert " — " in errors[0], errors[0]  # what (where) — how to fix


def fuzzed_options(plugin: str) -> list[click.Option]:
    from tl.cli.main import cli

    run = cli.get_command(click.Context(cli), "run")
    command = run.get_command(click.Context(run), plugin)
    return sorted(
        (p for p in command.params
         if isinstance(p, click.Option) and not p.is_flag and p.name not in NOT_FUZZED),
        key=lambda p: p.name,
    )  # fmt: skip


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-fuzz")
    return {name: make(root / name) for name, make in PLUGINS.items()}


@pytest.mark.parametrize("plugin", list(PLUGINS))
def test_run_options_end_in_a_run_or_one_line(plugin, datasets, tmp_path):
    data, args = datasets[plugin]
    options = fuzzed_options(plugin)
    codes: list[int] = []

    @CLI_FUZZ
    @given(
        option=st.sampled_from(options),
        value=st.sampled_from(ODD) | st.sampled_from(PLAIN) | st.text(max_size=6),
    )
    def case(option: click.Option, value: str) -> None:
        flag = option.opts[0]
        base = ["run", plugin, "--data", str(data), *args, *COMMON, "--epochs", "1"]
        if flag in base:
            at = base.index(flag)
            del base[at : at + 2]
        out = Path(tempfile.mkdtemp(dir=tmp_path))
        code, stdout, stderr = invoke(*base, "--out", str(out), flag, value)
        codes.append(code)
        assert_clean_end(code, stderr)
        if code == 0:
            run_dir = Path(stdout.strip().splitlines()[-1])
            assert (run_dir / "metrics.json").is_file() and (run_dir / "model.onnx").is_file()
        shutil.rmtree(out, ignore_errors=True)

    case()
    print(
        f"tl run {plugin}: {len(codes)} cases, {codes.count(0)} ran, {codes.count(2)} one-line errors"
    )
    assert 2 in codes


# ---------------------------------------------------------------------------- tl predict
def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def _mutate(target: Path, how: str, at: float, blob: bytes) -> None:
    raw = target.read_bytes()
    cut = int(len(raw) * at)
    if how == "truncate":
        target.write_bytes(raw[:cut])
    elif how == "overwrite":
        target.write_bytes(raw[:cut] + blob + raw[cut + len(blob) :])
    elif how == "empty":
        target.write_bytes(b"")
    elif how == "append":
        target.write_bytes(raw + blob)
    elif how == "drop-column":
        frame = pd.read_csv(target)
        frame.drop(columns=frame.columns[int(at * (len(frame.columns) - 1))]).to_csv(
            target, index=False
        )
    elif how == "text-cells":
        frame = pd.read_csv(target, dtype=str)
        column = frame.columns[int(at * (len(frame.columns) - 1))]
        frame.loc[frame.index[:: max(1, len(frame) // 3)], column] = blob.decode("latin-1")
        frame.to_csv(target, index=False)


@pytest.fixture(scope="module")
def trained(datasets, tmp_path_factory):
    """One tiny trained run per plugin (the model `tl predict` is fuzzed against)."""
    runs = {}
    for plugin, (data, args) in datasets.items():
        out = tmp_path_factory.mktemp(f"run-{plugin}")
        code, stdout, stderr = invoke(
            "run", plugin, "--data", str(data), *args, *COMMON, "--epochs", "1", "--out", str(out)
        )
        assert code == 0, stderr[-2000:]
        runs[plugin] = Path(stdout.strip().splitlines()[-1])
    return runs


PREDICT_INPUT = {  # what each plugin's `tl predict` reads, from its training data
    "medical": lambda data: data,
    "fraud": lambda data: data,
    "recsys": lambda data: data,
    "driving": lambda data: data / "images" if (data / "images").is_dir() else data,
}


@pytest.mark.parametrize("plugin", list(PLUGINS))
def test_predict_on_damaged_input_ends_in_predictions_or_one_line(
    plugin, datasets, trained, tmp_path
):
    source = PREDICT_INPUT[plugin](datasets[plugin][0])
    files = _files(source)
    hows = ["truncate", "overwrite", "empty", "append"]
    if source.suffix == ".csv":
        hows += ["drop-column", "text-cells"]
    codes: list[int] = []

    @CLI_FUZZ
    @given(
        pick=st.integers(0, len(files) - 1),
        how=st.sampled_from(hows),
        at=st.floats(0, 1),
        blob=st.binary(min_size=1, max_size=64),
        skip_bad=st.booleans(),
    )
    def case(pick: int, how: str, at: float, blob: bytes, skip_bad: bool) -> None:
        work = Path(tempfile.mkdtemp(dir=tmp_path))
        copy = work / source.name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy)
        _mutate(_files(copy)[pick], how, at, blob)
        out = work / "predictions.csv"
        flags = ["--skip-bad"] if skip_bad else []
        code, _, stderr = invoke(
            "predict", str(trained[plugin]), "--data", str(copy), "--out", str(out), *flags
        )
        codes.append(code)
        assert_clean_end(code, stderr)
        if code == 0:
            assert out.is_file()
            pd.read_csv(out)  # a complete, parseable table
        else:
            assert not out.exists(), "a failed predict left an output file"
        shutil.rmtree(work, ignore_errors=True)

    case()
    print(
        f"tl predict {plugin}: {len(codes)} cases, {codes.count(0)} predicted, {codes.count(2)} one-line errors"
    )
    assert 0 in codes and 2 in codes, codes  # both ends were reached


# cases a deeper hunt (TL_FUZZ_EXAMPLES=50) found, kept as regressions
@pytest.mark.parametrize(
    ("plugin", "flags", "code", "message"),
    [
        ("medical", ["--batch-size", "1"], 2, "cannot train the model's BatchNorm layers"),
        ("medical", ["--batch-size", "15"], 0, ""),  # 16 training images: 15 + a batch of 1
        ("driving", ["--backbone", "0"], 2, "unknown backbone '0'"),
        ("driving", ["--backbone", "vit_tiny_patch16_224"], 2, "no stride 8/16/32 feature maps"),
    ],
)
def test_found_by_fuzzing(plugin, flags, code, message, datasets, tmp_path):
    data, args = datasets[plugin]
    base = ["run", plugin, "--data", str(data), *args, *COMMON, "--epochs", "1"]
    at = base.index(flags[0])
    del base[at : at + 2]
    got, _, stderr = invoke(*base, "--out", str(tmp_path), *flags)
    assert got == code, stderr[-2000:]
    assert_clean_end(got, stderr)
    assert message in stderr
