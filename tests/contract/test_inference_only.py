"""The inference-only install: `pip install <core> <plugin>` without the `[train]` extras.

It has no torch, timm or peft, and still predicts and evaluates every plugin's run exactly as
the training install does; a command that trains fails at once, naming the install command.
The environment is the repository's ``.venv-inference`` (`.ci/run` builds it, as the README's
"Deploy" install says); when it is missing, the session builds it (a few minutes, once).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from contract_harness import one_error_line, tl

REPO = Path(__file__).resolve().parents[2]
PLUGINS = ("medical", "fraud", "recsys", "driving")
TRAINING_ONLY = ("torch", "torchvision", "timm", "peft", "safetensors", "onnxscript")


@pytest.fixture(scope="session")
def inference_env() -> Path:
    """The ``bin`` folder of a virtual environment holding tl and its plugins, no extras."""
    venv = Path(os.environ.get("TL_INFERENCE_VENV", REPO / ".venv-inference"))
    if not (venv / "bin" / "tl").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        packages = [str(REPO), *(str(REPO / "plugins" / name) for name in PLUGINS)]
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *packages], check=True)
    return venv / "bin"


def _run(bin_dir: Path, *argv: object) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(bin_dir / "tl"), *map(str, argv)], capture_output=True, text=True, env=env
    )


def test_the_inference_install_has_no_training_dependencies(inference_env):
    probe = f"import importlib.util as u; print([m for m in {TRAINING_ONLY!r} if u.find_spec(m)])"
    out = subprocess.run(
        [str(inference_env / "python"), "-c", probe], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_predict_and_evaluate_without_torch_equal_the_training_install(trained, inference_env):
    if trained.name == "toy":
        pytest.skip("the toy plugin lives in the test suite, not in an installable package")
    spec = trained.spec
    data = spec.predict_data(trained.data, trained.root) if spec.predict_data else trained.data
    here, there = trained.root / "predict-train-install.csv", trained.root / "predict-infer.csv"
    code, _, stderr = tl("predict", trained.run_dir, "--data", data, *spec.predict_args,
                         "--out", here)  # fmt: skip
    assert code == 0, stderr[-2000:]
    done = _run(inference_env, "predict", trained.run_dir, "--data", data, *spec.predict_args,
                "--out", there)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    expected, got = pd.read_csv(here), pd.read_csv(there)
    assert list(got.columns) == list(expected.columns) and len(got) == len(expected) > 0
    for column in expected.columns:
        if pd.api.types.is_float_dtype(expected[column]):
            np.testing.assert_allclose(got[column], expected[column], atol=1e-5, rtol=0)
        else:
            assert got[column].astype(str).tolist() == expected[column].astype(str).tolist()

    code, stdout, stderr = tl("evaluate", trained.run_dir, "--data", trained.data)
    assert code == 0, stderr[-2000:]
    done = _run(inference_env, "evaluate", trained.run_dir, "--data", trained.data)
    assert done.returncode == 0, done.stderr[-2000:]
    expected, got = json.loads(stdout), json.loads(done.stdout)
    assert got.keys() == expected.keys()
    numbers = [k for k, v in expected.items() if isinstance(v, float)]
    assert numbers, expected
    np.testing.assert_allclose([got[k] for k in numbers], [expected[k] for k in numbers],
                               atol=1e-6)  # fmt: skip


def test_training_in_the_inference_install_names_the_install_command(trained, inference_env):
    if trained.name == "toy":
        pytest.skip("the toy plugin lives in the test suite, not in an installable package")
    done = _run(inference_env, "run", trained.name, "--data", trained.data)
    assert done.returncode == 2, done.stderr[-2000:]
    line = one_error_line(done.stderr)
    assert "torch" in line and f'"./plugins/{trained.name}[train]"' in line
    assert "inference-only" in line
