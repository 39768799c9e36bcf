"""End-to-end core behaviour through a toy plugin: run directory, resume, export, weights."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from tl.core import ConfigError, WeightsError
from tl.core.run import run_plugin
from toy_plugin import ToyPlugin, toy_options

REQUIRED_FILES = [
    "config.yaml",
    "splits.csv",
    "history.csv",
    "checkpoints/last.safetensors",
    "checkpoints/best.safetensors",
    "model.onnx",
    "metrics.json",
    "report.md",
    "training_curves.png",
    "manifest.json",
]


@pytest.fixture(scope="module")
def toy_run(toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return run_plugin(ToyPlugin(), toy_options(toy_data, out, epochs=6, patience=0))


def test_run_directory_holds_every_artifact(toy_run):
    for name in REQUIRED_FILES:
        assert (toy_run / name).exists(), name
    assert any((toy_run / "tb").iterdir())
    metrics = json.loads((toy_run / "metrics.json").read_text())
    for key in [
        "plugin",
        "task",
        "backbone",
        "weights",
        "strategy",
        "n_train",
        "n_val",
        "n_test",
        "train_seconds",
        "onnx_parity",
    ]:
        assert key in metrics, key
    assert metrics["n_train"] == 144 and metrics["n_test"] == 48


def test_toy_model_learns(toy_run):
    metrics = json.loads((toy_run / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.8  # chance is 1/3


def test_onnx_matches_torch_on_real_batches(toy_run):
    parity = json.loads((toy_run / "metrics.json").read_text())["onnx_parity"]
    assert parity["max_abs_diff"] < 1e-4
    assert parity["agreement"] == 1.0
    assert parity["rows"] == 21


def test_onnx_has_dynamic_batch_and_metadata(toy_run, toy_data):
    from tl.core import load_onnx_model

    model = load_onnx_model(toy_run, device="cpu")
    assert model.meta["plugin"] == "toy" and model.meta["labels"] == ["left", "right", "top"]
    assert model.providers == ["CPUExecutionProvider"]
    with np.load(toy_data / "data.npz") as npz:
        images = npz["images"]
    for batch in (1, 7, 33):
        assert model.run({"image": images[:batch]})["probabilities"].shape == (batch, 3)


def test_config_reproduces_the_run(toy_run, tmp_path):
    config = yaml.safe_load((toy_run / "config.yaml").read_text())
    assert config["epochs"] == 6 and config["backbone"] == "resnet10t"
    again = run_plugin(ToyPlugin(), {"config": str(toy_run / "config.yaml"), "out": str(tmp_path)})
    first = json.loads((toy_run / "metrics.json").read_text())
    second = json.loads((again / "metrics.json").read_text())
    assert again != toy_run
    timing = {"train_seconds", "onnx_parity"}
    same = {k: v for k, v in first.items() if k not in timing}
    assert {k: second[k] for k in same} == same, "same seed, data and flags: same metrics"


def test_run_directories_are_never_reused(toy_data, tmp_path):
    from tl.core.rundir import make_run_dir

    made = {make_run_dir(tmp_path, "toy") for _ in range(5)}
    assert len(made) == 5


KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from toy_plugin import ToyPlugin, toy_options
from tl.core.run import run_plugin
run_plugin(ToyPlugin(), toy_options({data!r}, {out!r}, epochs=5, patience=0, checkpoint_every=0))
"""


def test_resume_after_kill_matches_an_uninterrupted_run(toy_data, tmp_path):
    straight = run_plugin(
        ToyPlugin(), toy_options(toy_data, tmp_path / "a", epochs=5, patience=0, checkpoint_every=0)
    )
    script = KILL_SCRIPT.format(
        tests=str(Path(__file__).parent), data=str(toy_data), out=str(tmp_path / "b")
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    progress = None
    while time.time() < deadline:
        found = list((tmp_path / "b").glob("*/checkpoints/last.json"))
        if found and json.loads(found[0].read_text())["epoch"] >= 2:
            progress = found[0]
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert progress is not None, "the run never wrote a checkpoint"
    killed_run = progress.parent.parent
    assert not (killed_run / "metrics.json").exists()
    resumed = run_plugin(ToyPlugin(), {"resume": str(killed_run)})
    assert resumed == killed_run
    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((resumed / "metrics.json").read_text())
    for key in ("accuracy", "auroc", "macro_f1", "ece"):
        assert b[key] == pytest.approx(a[key], abs=1e-6), key
    hist_a = (straight / "history.csv").read_text().splitlines()
    hist_b = (resumed / "history.csv").read_text().splitlines()
    assert len(hist_a) == len(hist_b) == 6


def test_compare_scratch_reports_transfer_gain(toy_data, tmp_path):
    run = run_plugin(ToyPlugin(), toy_options(toy_data, tmp_path, epochs=2, compare_scratch=True))
    metrics = json.loads((run / "metrics.json").read_text())
    assert "accuracy" in metrics["scratch"]
    assert metrics["transfer_gain"]["accuracy"] == pytest.approx(
        metrics["accuracy"] - metrics["scratch"]["accuracy"]
    )
    assert "Transfer vs from scratch" in (run / "report.md").read_text()


def test_weights_from_an_earlier_run_are_loaded(toy_run, toy_data, tmp_path):
    run = run_plugin(
        ToyPlugin(),
        toy_options(toy_data, tmp_path, epochs=1, weights=str(toy_run), strategy="linear"),
    )
    metrics = json.loads((run / "metrics.json").read_text())
    # a linear probe on the trained backbone is already good after one epoch
    assert metrics["accuracy"] > 0.8
    assert "tensors loaded" in (run / "report.md").read_text()


def test_missing_weights_file_is_a_weights_error(toy_data, tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        run_plugin(
            ToyPlugin(), toy_options(toy_data, tmp_path, weights=str(tmp_path / "nope.safetensors"))
        )


def test_unknown_backbone_suggests_a_name(toy_data, tmp_path):
    with pytest.raises(ConfigError, match="did you mean") as info:
        run_plugin(ToyPlugin(), toy_options(toy_data, tmp_path, backbone="resnet10x"))
    assert "resnet10t" in info.value.line()


def test_hub_weights_offline_fail_fast(toy_data, tmp_path, monkeypatch):
    import tl.core.backbones as backbones

    monkeypatch.setattr(backbones, "HUB_HOST", ("127.0.0.1", 9))
    start = time.time()
    with pytest.raises(WeightsError, match="unreachable"):
        run_plugin(ToyPlugin(), toy_options(toy_data, tmp_path, weights="hub"))
    assert time.time() - start < 10


def test_a_last_training_batch_of_one_joins_the_batch_before_it():
    from tl.core.trainer import EpochBatchSampler

    def sizes(n: int, shuffle: bool) -> list[int]:
        sampler = EpochBatchSampler(range(n), 16, shuffle, seed=0, distributed=False)
        batches = [len(b) for b in sampler]
        assert len(sampler) == len(batches) and sum(batches) == n
        return batches

    assert sizes(17, shuffle=True) == [17]  # BatchNorm cannot train on one item
    assert sizes(33, shuffle=True) == [16, 17]
    assert sizes(18, shuffle=True) == [16, 2]
    assert sizes(17, shuffle=False) == [16, 1]  # evaluation keeps every batch as it is
    assert sizes(1, shuffle=True) == [1]
