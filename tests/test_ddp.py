"""Two CPU processes (gloo) under torchrun train like one process with the same global batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tl.core.run import run_plugin
from toy_plugin import ToyPlugin, toy_options

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from toy_plugin import ToyPlugin, toy_options
from tl.core.run import run_plugin
run = run_plugin(ToyPlugin(), toy_options({data!r}, {out!r}, **{options!r}))
import os
if os.environ["RANK"] == "0":
    print(run)
"""

# small on purpose (CI on 2 cores): 72 train items, 3 global batches of 24 per epoch
OPTIONS = {
    "epochs": 2,
    "patience": 0,
    "batch_size": 24,
    "strategy": "partial:1",
    "precise_bn": "off",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    import numpy as np
    from toy_plugin import make_images

    toy_data = tmp_path / "data"
    toy_data.mkdir()
    images, labels = make_images(120, seed=1)
    np.savez(toy_data / "data.npz", images=images, labels=labels)
    script = SCRIPT.format(
        tests=str(Path(__file__).parent),
        data=str(toy_data),
        out=str(tmp_path / "ddp"),
        options=OPTIONS,
    )
    (tmp_path / "ddp_run.py").write_text(script)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}",
            str(tmp_path / "ddp_run.py"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    single = run_plugin(ToyPlugin(), toy_options(toy_data, tmp_path / "one", **OPTIONS))
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-3000:]
    runs = list((tmp_path / "ddp").iterdir())
    assert len(runs) == 1, "only rank 0 creates a run directory"
    ddp = runs[0]
    assert stdout.strip().splitlines()[-1] == str(ddp)
    for name in ("model.onnx", "metrics.json", "checkpoints/best.safetensors", "report.md"):
        assert (ddp / name).exists(), name
    assert "distributed: 2 processes" in (ddp / "log.txt").read_text()

    one = json.loads((single / "metrics.json").read_text())
    two = json.loads((ddp / "metrics.json").read_text())
    assert two["n_train"] == one["n_train"]
    hist_one = (single / "history.csv").read_text().splitlines()
    hist_two = (ddp / "history.csv").read_text().splitlines()
    assert len(hist_one) == len(hist_two) == OPTIONS["epochs"] + 1
    loss_one = [float(r.split(",")[1]) for r in hist_one[1:]]
    loss_two = [float(r.split(",")[1]) for r in hist_two[1:]]
    # same global batches and gradient averaging: only BatchNorm batch statistics of the
    # trainable stage differ (per-rank half batches)
    assert loss_two == pytest.approx(loss_one, rel=0.05)
    for key in ("accuracy", "auroc"):
        assert two[key] == pytest.approx(one[key], abs=0.1), key
