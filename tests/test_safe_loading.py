"""Safe loading: no pickle / eval / exec / shell=True in the code, and tampered checkpoints
or ONNX files end in one clear line (exit 2) from `tl predict`, `tl evaluate`, `--resume`
and `--weights`."""

from __future__ import annotations

import io
import re
import shutil
import tokenize
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
CODE = [ROOT / "core", ROOT / "cli", *sorted(ROOT.glob("plugins/*/tl_*"))]
FORBIDDEN = {
    "pickle": re.compile(r"\b(c?pickle|dill|joblib|marshal|shelve)\b"),
    "torch.load without weights_only=True": re.compile(r"torch\.load\((?![^)]*weights_only=True)"),
    "weights_only=False": re.compile(r"weights_only\s*=\s*False"),
    "eval(": re.compile(r"(?<![\w.])eval\("),
    "exec(": re.compile(r"(?<![\w.])exec\("),
    "shell=True": re.compile(r"shell\s*=\s*True"),
    "yaml.load": re.compile(r"yaml\.(load|unsafe_load|full_load)\("),
    "np.load allow_pickle": re.compile(r"allow_pickle\s*=\s*True"),
}


def _code_without_comments(path: Path) -> str:
    """Source with comments and docstrings/strings blanked (they may *mention* pickle)."""
    out = []
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    for tok in tokens:
        if tok.type in (tokenize.COMMENT, tokenize.STRING):
            out.append('""' if tok.type == tokenize.STRING else "")
        else:
            out.append(tok.string)
        out.append(" " if tok.type not in (tokenize.NEWLINE, tokenize.NL) else "\n")
    return (
        "".join(out)
        .replace(" ( ", "(")
        .replace(" (", "(")
        .replace("( ", "(")
        .replace(" . ", ".")
        .replace(" = ", "=")
    )


def test_no_unsafe_deserialisation_or_shell_anywhere():
    files = [p for folder in CODE for p in folder.rglob("*.py")]
    assert len(files) > 40
    found = []
    for path in files:
        code = _code_without_comments(path)
        found += [
            f"{path.relative_to(ROOT)}: {name}" for name, rx in FORBIDDEN.items() if rx.search(code)
        ]
    assert not found, found


# ---------------------------------------------------------------- tampered files
@pytest.fixture(scope="module")
def toy_run(toy_data, tmp_path_factory):
    from tl.core.run import run_plugin
    from toy_plugin import ToyPlugin, toy_options

    return run_plugin(ToyPlugin(), toy_options(toy_data, tmp_path_factory.mktemp("runs"), epochs=1))


def _cli(monkeypatch, capsys, *args: str) -> str:
    import tl.core.registry as registry
    from tl.cli.main import main
    from toy_plugin import ToyPlugin

    real = registry.load_plugin
    monkeypatch.setattr(registry, "load_plugin", lambda n: ToyPlugin() if n == "toy" else real(n))
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(list(args))
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00garbage" * 50)


def _huge_header(path: Path) -> None:  # safetensors: 8-byte header length far past the file
    path.write_bytes((2**40).to_bytes(8, "little") + b"{}")


def _edit_json(path: Path) -> None:
    path.write_text(path.read_text()[:-20] + "}{")


def _wrong_json(path: Path) -> None:
    path.write_text('{"epoch": "two", "history": 5}')


CHECKPOINT_TAMPERS = {
    "last.safetensors": [_truncate, _garbage, _huge_header],
    "last.json": [_edit_json, _wrong_json],
    "last.state.pt": [_truncate, _garbage],
}


@pytest.mark.parametrize(
    "name,tamper", [(n, t) for n, ts in CHECKPOINT_TAMPERS.items() for t in ts],
    ids=lambda v: getattr(v, "__name__", v),
)  # fmt: skip
def test_tampered_checkpoint_on_resume(toy_run, tmp_path, monkeypatch, capsys, name, tamper):
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    path = run / "checkpoints" / name
    if not path.exists():  # the final epoch keeps no training state; a killed run's does
        torch.save({"optimizer": {"state": {}, "param_groups": []}}, path)
    tamper(path)
    line = _cli(monkeypatch, capsys, "run", "toy", "--resume", str(run))
    assert "checkpoint" in line or "training state" in line, line


@pytest.mark.parametrize("tamper", [_truncate, _garbage, _huge_header])
def test_tampered_weights_file(toy_run, toy_data, tmp_path, monkeypatch, capsys, tamper):
    weights = tmp_path / "w.safetensors"
    shutil.copy(toy_run / "checkpoints" / "best.safetensors", weights)
    tamper(weights)
    line = _cli(monkeypatch, capsys, "run", "toy", "--data", str(toy_data), "--weights",
                str(weights), "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "o"))  # fmt: skip
    assert str(weights) in line


def _onnx_with_metadata(src: Path, dst: Path, value: str | None) -> None:
    import onnx

    model = onnx.load(str(src))
    del model.metadata_props[:]
    if value is not None:
        model.metadata_props.add(key="tl", value=value)
    onnx.save(model, str(dst))


@pytest.mark.parametrize(
    "case", ["truncated", "garbage", "empty", "not_json", "json_list", "no_tl"]
)
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_tampered_onnx(toy_run, toy_data, tmp_path, monkeypatch, capsys, case, command):
    model = tmp_path / "model.onnx"
    src = toy_run / "model.onnx"
    if case == "truncated":
        model.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    elif case == "garbage":
        model.write_bytes(b"\x08\xff" * 100)
    elif case == "empty":
        model.write_bytes(b"")
    else:
        value = {"not_json": "{'plugin': 'toy'", "json_list": "[1, 2]", "no_tl": None}[case]
        _onnx_with_metadata(src, model, value)
    line = _cli(
        monkeypatch, capsys, command, str(model), "--data", str(toy_data), "--device", "cpu"
    )
    assert "model" in line.lower() or "onnx" in line.lower(), line
